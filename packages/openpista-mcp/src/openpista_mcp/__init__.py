"""openpista-mcp: MCP servers' tools and resources for the openpista agent.

The plugin module is :mod:`openpista_mcp.plugin`; the SDK is imported only when a server
is configured (see ``docs/mcp.md``).
"""
