"""``nanochat-tui web``: the same TUI in a browser via textual-serve, on 127.0.0.1 by default.

Each browser tab runs its own ``nanochat-tui tui`` process, so a live run must be detached (or
attached by run directory) to be seen from more than one tab. Only the holder of the start token
may open a tab (``web_access``): the URL with it is printed once at start.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument("--prefab", default=None, help="prefab each tab opens on")
    parser.add_argument(
        "--run", dest="run_dir", default=None, metavar="RUN_DIR", help="attach each tab to a run"
    )
    parser.add_argument(
        "--token-env",
        default=None,
        metavar="NAME",
        help="take the access token from environment variable NAME (default: a new random one, "
        "printed once in the start URL)",
    )
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="also accept this Host name (repeatable; default: localhost, 127.0.0.1, [::1] and "
        "the bind address)",
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
        import textual_serve  # noqa: F401
    except ImportError:
        raise UserError(
            "the web view needs textual-serve, which is not installed",
            "install the extra: `uv sync --extra web` (or `pip install 'nanochat-tui[web]'`)",
        ) from None
    from nanochat_tui.commands.web_access import Access, GuardedServer, new_token, url_host

    if not 0 < args.port < 65536:
        raise UserError(f"--port {args.port} is not a port", "pick one from 1 to 65535")
    if args.token_env:
        from nanochat_tui.secrets import secret_from_env

        token = secret_from_env(
            args.token_env, "--token-env", "drop --token-env for a random token"
        )
        # each tab's TUI process inherits this environment and has no use for the token
        del os.environ[args.token_env]
        shown = f"<the value of ${args.token_env}>"
    else:
        token = shown = new_token()
    access = Access.for_server(token, args.host, args.port, args.allow_host)
    print(
        f"nanochat-tui in the browser: http://{url_host(args.host)}:{args.port}/?token={shown}\n"
        f"  (ctrl+c stops; from another machine: ssh -L {args.port}:127.0.0.1:{args.port} HOST, "
        "then open the same URL)",
        file=sys.stderr,
        flush=True,
    )
    server = GuardedServer(
        command_line(args), access, host=args.host, port=args.port, title="nanochat-tui"
    )
    try:
        server.serve()
    except OSError as err:
        raise UserError(
            f"cannot serve on {args.host}:{args.port}: {err.strerror or err}",
            "pick another port with --port, or stop what is using this one",
        ) from None
    return 0
