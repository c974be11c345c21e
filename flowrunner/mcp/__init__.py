"""MCP: tools from MCP servers in flows, and flows served as MCP tools (`flowrun mcp serve`)."""
