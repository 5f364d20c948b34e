"""``nanochat-tui mcp``: a stdio Model Context Protocol server so an assistant (Claude Desktop, ...)
can list prefabs, check configs, start and steer runs and chat with checkpoints (docs/mcp.md).

``tools`` holds the tool functions (plain Python, no MCP types), ``chat`` the checkpoint chat,
``server`` the FastMCP app that exposes them with readable errors."""
