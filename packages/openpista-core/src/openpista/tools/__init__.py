"""Tools the LLM can call: the contract, the registry and the built-in shell tool."""
