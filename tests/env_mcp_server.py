"""An MCP stdio server (the ``mcp`` SDK's MCPServer, FastMCP before 2.0) whose one tool,
``report_environment``, answers the environment the process was started with as a JSON object.

    python tests/env_mcp_server.py

Used by ``tests/test_mcp.py`` to see what the router passes to the servers it starts.
"""

from __future__ import annotations

import json
import os

from mcp.server.mcpserver import MCPServer

app = MCPServer("env-reporter", version="1.0", log_level="WARNING")


@app.tool()
def report_environment() -> str:
    """The environment variables of this server process, as a JSON object."""
    return json.dumps(dict(os.environ), sort_keys=True)


if __name__ == "__main__":
    app.run("stdio")
