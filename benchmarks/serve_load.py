"""Serving load: tokens/s and latency p50/p99 at 1, 8 and 32 concurrent streams vs one at a time.

Starts ``nanochat-tui serve``'s app on 127.0.0.1 in a child process and drives it with the real
``openai`` async client from this one (streaming ``/v1/completions``, greedy, a fixed ``max_tokens``). The
one-at-a-time baseline runs the same requests sequentially against a server with a single slot (the
best a server without batching can do); the concurrent levels use a ``--slots`` server, where
requests share the batched decode steps. Each server compiles all its batch shapes before it is
timed, as ``serve`` does in the background from its start.

    uv run python benchmarks/serve_load.py                      # random-weight d4 model, CPU or GPU
    uv run python benchmarks/serve_load.py --run RUN_DIR        # a trained checkpoint instead
    uv run python benchmarks/serve_load.py --recipe nanochat-2026  # every 2026 switch on
    uv run python benchmarks/serve_load.py --levels 1,8 --tokens 32 --json out.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from typing import Any


def random_state(depth: int, seq: int, recipe: str = "nanochat-2025"):
    """A random-weight model (and a small BPE tokenizer) of the given size."""
    import jax
    from flax import nnx

    from nanochat_tui.config.schema import ModelConfig
    from nanochat_tui.jax_engine.model import GPT
    from nanochat_tui.jax_engine.tokenizer import Tokenizer
    from nanochat_tui.serve.app import ServeState
    from nanochat_tui.serve.engine import BatchEngine

    rng = random.Random(0)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(5)) for _ in range(400)
    ]
    text = [" ".join(rng.choice(words) for _ in range(200)) for _ in range(200)]
    tokenizer = Tokenizer.train(text, 1024)
    cfg = ModelConfig(
        depth=depth,
        aspect_ratio=64,
        head_dim=64,
        sequence_len=seq,
        vocab_size=tokenizer.vocab_size,
        recipe=recipe,
    )
    model = GPT(cfg, rngs=nnx.Rngs(0))
    leaves, treedef = jax.tree.flatten(nnx.state(model, nnx.Param))
    keys = jax.random.split(jax.random.key(1), len(leaves))
    noisy = [jax.random.normal(k, x.shape) * 0.05 for k, x in zip(keys, leaves, strict=True)]
    nnx.update(model, jax.tree.unflatten(treedef, noisy))

    def make(n_slots: int) -> ServeState:
        return ServeState(
            model_id="bench", tokenizer=tokenizer, engine=BatchEngine(model, slots=n_slots)
        )

    return make


def run_state(path: str):
    from nanochat_tui.serve.server import load_state

    def make(n_slots: int):
        state = load_state(path, slots=n_slots)
        state.model_id = "bench"
        return state

    return make


async def drive(base_url: str, concurrency: int, requests: int, tokens: int) -> dict[str, Any]:
    """Send ``requests`` streaming completions, ``concurrency`` at a time; time them."""
    import openai

    latencies: list[float] = []
    ttfts: list[float] = []
    counts: list[int] = []
    sem = asyncio.Semaphore(concurrency)

    async def one(ac: openai.AsyncOpenAI, i: int) -> None:
        async with sem:
            start = time.perf_counter()
            first = None
            stream = await ac.completions.create(
                model="bench",
                prompt=f"request {i} begins",
                temperature=0,
                max_tokens=tokens,
                stream=True,
                stream_options={"include_usage": True},
            )
            async for chunk in stream:
                if first is None and chunk.choices and chunk.choices[0].text:
                    first = time.perf_counter() - start
                if chunk.usage is not None:
                    counts.append(chunk.usage.completion_tokens)
            latencies.append(time.perf_counter() - start)
            ttfts.append(first or latencies[-1])

    async with openai.AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0) as ac:
        start = time.perf_counter()
        await asyncio.gather(*(one(ac, i) for i in range(requests)))
        wall = time.perf_counter() - start
    from nanochat_tui.serve.metrics import percentile

    return {
        "concurrency": concurrency,
        "requests": requests,
        "tokens": sum(counts),
        "wall_s": wall,
        "tokens_per_s": sum(counts) / wall,
        "latency_p50_s": percentile(latencies, 50),
        "latency_p99_s": percentile(latencies, 99),
        "ttft_p50_s": percentile(ttfts, 50),
    }


def serve_forever(make, slots: int, port: int) -> None:
    """Server side of one measurement (a child process, so the client's Python work does not
    compete with the engine thread for the GIL)."""
    from nanochat_tui.jax_engine import compile_cache
    from nanochat_tui.serve.server import BackgroundServer

    compile_cache.enable()  # a rerun loads the shapes from disk
    state = make(slots)
    state.engine.precompile(wait=True)  # what `serve` does in the background: timing starts warm
    with BackgroundServer(state, port=port):
        while True:
            time.sleep(3600)


def measure(args, slots: int, level: int, requests: int) -> dict[str, Any]:
    import socket
    import subprocess
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, __file__, "--serve-port", str(port), "--slots", str(slots)]
    cmd += ["--depth", str(args.depth), "--seq", str(args.seq), "--recipe", args.recipe]
    if args.run:
        cmd += ["--run", args.run]
    server = subprocess.Popen(cmd, stderr=subprocess.DEVNULL)
    try:
        base_url = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 600
        while True:
            try:
                urllib.request.urlopen(f"{base_url}/models", timeout=5).close()
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the benchmark server did not start") from None
                time.sleep(0.5)
        # the same traffic once untimed (first-call Python paths, connection pools)
        asyncio.run(drive(base_url, level, requests, args.tokens))
        return asyncio.run(drive(base_url, level, requests, args.tokens))
    finally:
        server.terminate()
        server.wait(timeout=30)


def step_times(args, rows_list: list[int]) -> list[dict[str, Any]]:
    """The device step alone (no HTTP, no sampling), per batch of rows: the ceiling batching can
    reach on this machine, whatever the server around it does."""
    import jax
    import numpy as np

    if args.run:
        engine = run_state(args.run)(args.slots).engine
    else:
        engine = random_state(args.depth, args.seq, args.recipe)(args.slots).engine
    out = []
    for rows in rows_list:
        z = np.zeros(rows, np.int32)
        call = lambda z=z: engine._step(engine._state, engine._cache, z, z, z, 64)  # noqa: E731
        logits, engine._cache = call()
        jax.block_until_ready(logits)
        start, n = time.perf_counter(), 30
        for _ in range(n):
            logits, engine._cache = call()
            jax.block_until_ready(logits)
        seconds = (time.perf_counter() - start) / n
        out.append({"rows": rows, "step_ms": seconds * 1000, "tokens_per_s": rows / seconds})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", help="serve this run dir / step dir instead of a random model")
    parser.add_argument("--depth", type=int, default=4, help="random model depth (width 64·depth)")
    parser.add_argument(
        "--recipe",
        default="nanochat-2025",
        choices=("nanochat-2025", "nanochat-2026"),
        help="random model recipe",
    )
    parser.add_argument("--seq", type=int, default=512, help="random model context length")
    parser.add_argument("--levels", default="1,8,32", help="concurrent streams to measure")
    parser.add_argument("--slots", type=int, default=32, help="slots of the batching server")
    parser.add_argument("--tokens", type=int, default=64, help="max_tokens per request")
    parser.add_argument("--serial-requests", type=int, default=8, help="one-at-a-time requests")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--serve-port", type=int, help=argparse.SUPPRESS)  # the server child
    args = parser.parse_args()
    import jax

    if args.serve_port:
        make = run_state(args.run) if args.run else random_state(args.depth, args.seq, args.recipe)
        serve_forever(make, args.slots, args.serve_port)
    device = jax.devices()[0]
    print(f"device: {device.platform} ({device.device_kind})", file=sys.stderr)
    rows = [{"mode": "serial (1 slot)", **measure(args, 1, 1, args.serial_requests)}]
    levels = [int(x) for x in args.levels.split(",")]
    for level in levels:
        rows.append(
            {
                "mode": f"batched ({args.slots} slots)",
                **measure(args, args.slots, level, 2 * level),
            }
        )
    serial = rows[0]["tokens_per_s"]
    print(f"{'mode':<20} {'streams':>7} {'reqs':>5} {'tok/s':>9} {'× serial':>8} "
          f"{'p50 s':>7} {'p99 s':>7} {'ttft p50':>8}")  # fmt: skip
    for r in rows:
        r["speedup_vs_serial"] = r["tokens_per_s"] / serial
        print(
            f"{r['mode']:<20} {r['concurrency']:>7} {r['requests']:>5} {r['tokens_per_s']:>9.1f} "
            f"{r['speedup_vs_serial']:>8.2f} {r['latency_p50_s']:>7.3f} {r['latency_p99_s']:>7.3f} "
            f"{r['ttft_p50_s']:>8.3f}"
        )
    steps = step_times(args, sorted({1, *(min(n, args.slots) for n in levels)}))
    print(f"\ndevice step alone (cache length 64, {args.slots}-slot cache): the batching ceiling")
    print(f"{'rows':>5} {'ms':>7} {'tok/s':>9} {'× 1 row':>8}")
    for r in steps:
        r["speedup_vs_one_row"] = r["tokens_per_s"] / steps[0]["tokens_per_s"]
        print(f"{r['rows']:>5} {r['step_ms']:>7.2f} {r['tokens_per_s']:>9.1f} "
              f"{r['speedup_vs_one_row']:>8.2f}")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": str(device), "rows": rows, "steps": steps}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
