"""``nanochat-tui serve RUN_DIR|STEP_DIR``: an OpenAI-compatible HTTP server (docs/serve.md)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", help="run directory (latest checkpoint) or a checkpoint step directory"
    )
    parser.add_argument("--host", default="127.0.0.1", help="bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument(
        "--api-key-env",
        metavar="NAME",
        help="require 'Authorization: Bearer KEY' with KEY read from environment variable NAME",
    )
    parser.add_argument("--model-id", help="the model name clients use (default: the run's name)")
    parser.add_argument(
        "--slots", type=int, default=8, help="sequences decoded together per device step"
    )
    parser.add_argument(
        "--max-queue", type=int, default=64, help="requests waiting for a slot before 429"
    )
    parser.add_argument(
        "--max-tokens", type=int, default=1024, help="largest max_tokens a request may ask for"
    )
    parser.add_argument(
        "--max-messages", type=int, default=256, help="most messages in one chat request"
    )
    parser.add_argument(
        "--precompile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compile every batch shape in the background from the start (default on; "
        "--no-precompile compiles each shape when traffic first needs it)",
    )


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from nanochat_tui.errors import UserError
    from nanochat_tui.jax_engine import compile_cache
    from nanochat_tui.serve.app import create_app
    from nanochat_tui.serve.protocol import Limits
    from nanochat_tui.serve.server import api_key_from_env, load_state

    for flag in ("slots", "max_queue", "max_tokens", "max_messages"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} must be at least 1")
    key = api_key_from_env(args.api_key_env)
    compile_cache.enable()
    print(f"loading {args.path} …", file=sys.stderr, flush=True)
    state = load_state(
        args.path,
        slots=args.slots,
        max_queue=args.max_queue,
        limits=Limits(max_tokens=args.max_tokens, max_messages=args.max_messages),
        api_key=key,
        model_id=args.model_id,
    )
    state.engine.start()
    if args.precompile:
        shapes = state.engine.shape_count
        print(f"compiling {shapes} batch shapes in the background …", file=sys.stderr, flush=True)

        def compiled(seconds: float) -> None:
            print(f"compiled {shapes} batch shapes in {seconds:.0f} s", file=sys.stderr, flush=True)

        state.engine.precompile(done=compiled)
    auth = "bearer key required" if key else "no API key"
    print(
        f"serving '{state.model_id}' at http://{args.host}:{args.port}/v1 "
        f"({args.slots} slots, context {state.max_len}, {auth})",
        file=sys.stderr,
        flush=True,
    )
    try:
        uvicorn.run(
            create_app(state, manage_engine=False),
            host=args.host,
            port=args.port,
            log_level="warning",
        )
    finally:
        state.engine.stop()
    return 0
