"""``nanochat-tui web``: the same TUI in a browser via textual-serve, on 127.0.0.1 by default.

Each browser tab runs its own ``nanochat-tui tui`` process, so a live run must be detached (or
attached by run directory) to be seen from more than one tab.
"""

from __future__ import annotations

import argparse
import shlex
import sys


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument("--prefab", default=None, help="prefab each tab opens on")
    parser.add_argument(
        "--run", dest="run_dir", default=None, metavar="RUN_DIR", help="attach each tab to a run"
    )


def command_line(args: argparse.Namespace) -> str:
    """The shell command each browser tab runs: this Python's ``nanochat-tui tui``."""
    parts = [sys.executable, "-m", "nanochat_tui.cli", "tui"]
    if args.prefab:
        parts += ["--prefab", args.prefab]
    if args.run_dir:
        parts += ["--run", args.run_dir]
    return " ".join(shlex.quote(p) for p in parts)


def run(args: argparse.Namespace) -> int:
    from nanochat_tui.errors import UserError

    try:
        from textual_serve.server import Server
    except ImportError:
        raise UserError(
            "the web view needs textual-serve, which is not installed",
            "install the extra: `uv sync --extra web` (or `pip install 'nanochat-tui[web]'`)",
        ) from None
    print(
        f"nanochat-tui in the browser: http://{args.host}:{args.port}  (ctrl+c stops; from another "
        f"machine use ssh -L {args.port}:127.0.0.1:{args.port})",
        file=sys.stderr,
        flush=True,
    )
    Server(command_line(args), host=args.host, port=args.port, title="nanochat-tui").serve()
    return 0
