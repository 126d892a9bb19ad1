"""LLM providers: the contract (:mod:`.base`) and the litellm-backed presets."""
