"""MCP client runtime: sessions to MCP servers on a loop thread the router owns.

The ``mcp`` SDK is imported only when a server is first used (``pip install 'router[mcp]'``).
"""

from router.mcp.servers import MCPServers, coerce_server_config
from router.mcp.session import MCPSession, ToolOutcome

__all__ = ["MCPServers", "MCPSession", "ToolOutcome", "coerce_server_config"]
