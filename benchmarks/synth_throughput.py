"""Synthetic-data throughput: rows/s at several concurrency levels against an endpoint with a fixed
reply latency, next to the ideal (concurrency / (3 × latency): three calls a row), plus what a
rate limit does to it.

The endpoint is a small OpenAI-shaped Starlette app on 127.0.0.1 that sleeps ``--latency`` seconds
per reply, so the numbers measure the pipeline (HTTP client, limiter, fsynced trace writes), not
a model. Each level writes to a fresh throw-away project.

    uv run python benchmarks/synth_throughput.py
    uv run python benchmarks/synth_throughput.py --rows 64 --latency 0.05 --levels 1,4,16,64
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import threading
import time


def endpoint_app(latency: float):
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def chat(request: Request) -> JSONResponse:
        await request.json()
        await asyncio.sleep(latency)
        message = {"role": "assistant", "content": "a reply of a few words"}
        usage = {"prompt_tokens": 40, "completion_tokens": 8, "total_tokens": 48}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return JSONResponse({"choices": [choice], "usage": usage})

    return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])


def serve(app):
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return server, server.servers[0].sockets[0].getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=48)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per reply")
    parser.add_argument("--levels", default="1,4,16", help="concurrency levels")
    parser.add_argument("--rpm", type=float, default=1200, help="rate-limited run: requests/min")
    args = parser.parse_args()
    os.environ["NANOCHAT_TUI_HOME"] = tempfile.mkdtemp(prefix="synth-bench-")

    from nanochat_tui import projects
    from nanochat_tui.align.endpoint import Endpoint
    from nanochat_tui.align.synth import SynthSettings, generate

    prompts = os.path.join(os.environ["NANOCHAT_TUI_HOME"], "prompts.jsonl")
    with open(prompts, "w") as fh:
        fh.writelines(f'{{"prompt": "Question number {i}?"}}\n' for i in range(args.rows))
    server, port = serve(endpoint_app(args.latency))
    endpoint = Endpoint(f"http://127.0.0.1:{port}/v1", "bench")
    runs = [(int(c), None) for c in args.levels.split(",")] + [(16, args.rpm)]
    print(f"{args.rows} rows × 3 calls, {args.latency * 1000:.0f} ms per reply")
    print(f"{'concurrency':>11} {'rpm':>6} {'rows/s':>8} {'ideal':>8} {'seconds':>8}")
    for n, (concurrency, rpm) in enumerate(runs):
        name = f"bench{n}"
        projects.create_project(name)
        settings = SynthSettings(
            project=name, prompts=prompts, concurrency=concurrency, rpm=rpm, max_tokens=8
        )
        start = time.perf_counter()
        progress = generate(settings, endpoint)
        seconds = time.perf_counter() - start
        assert progress.done == args.rows, progress
        ideal = concurrency / (3 * args.latency)
        if rpm:
            ideal = min(ideal, rpm / 60 / 3)
        rate = args.rows / seconds
        print(f"{concurrency:>11} {rpm or '-':>6} {rate:>8.1f} {ideal:>8.1f} {seconds:>8.2f}")
    server.should_exit = True


if __name__ == "__main__":
    main()
