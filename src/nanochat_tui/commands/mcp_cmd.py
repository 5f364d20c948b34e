"""``nanochat-tui mcp``: the MCP server on stdio, for assistants such as Claude Desktop
(docs/mcp.md). Needs the ``mcp`` extra."""

from __future__ import annotations

import argparse
import os
import sys


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    """No options: the client starts the server and talks JSON-RPC over stdin/stdout."""


def run(args: argparse.Namespace) -> int:
    from nanochat_tui.errors import UserError

    try:
        from nanochat_tui.mcp.server import build_app
    except ImportError as err:
        if (err.name or "").partition(".")[0] != "mcp":
            raise
        raise UserError(
            "the MCP server needs the mcp package, which is not installed",
            "run it with `uv run --extra mcp nanochat-tui mcp` (or `pip install 'nanochat-tui[mcp]'`)",
        ) from None
    _protect_stdout()
    try:
        build_app().run("stdio")
    finally:
        sys.stdout = sys.__stdout__  # the SDK closed the protocol copy when stdin ended
    return 0


def _protect_stdout() -> None:
    """Keep the protocol alone on stdout: the SDK writes to a private copy of fd 1, and fd 1
    itself points at stderr, so output from native code (XLA) cannot corrupt the stream."""
    protocol = os.dup(sys.stdout.fileno())
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = open(protocol, "w", encoding="utf-8", closefd=True)  # noqa: SIM115
