"""Causal attention forward+backward at nanochat's d4 shape on CPU: XLA's full-matrix path vs the
blocked path (attention.py), interleaved A/B so a shared, loaded machine affects both alike.

    uv run python benchmarks/attention_cpu.py [--rounds 5] [--window 128]
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from nanochat_tui.jax_engine.attention import blocked_causal_attention


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--window", type=int, default=None)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    shape = (args.batch, args.seq, args.heads, args.head_dim)
    keys = jax.random.split(jax.random.key(0), 3)
    q, k, v = (jax.random.normal(key, shape, jnp.float32) for key in keys)
    local = None if args.window is None else (args.window, 0)

    def xla(q, k, v):
        return jax.nn.dot_product_attention(q, k, v, is_causal=True, local_window_size=local)

    variants = {"xla": xla}
    for block in (64, 128, 256):
        variants[f"blocked{block}"] = lambda q, k, v, b=block: blocked_causal_attention(
            q, k, v, args.window, b
        )
    fns = {
        name: jax.jit(jax.value_and_grad(lambda q, k, v, f=f: jnp.sum(f(q, k, v)), (0, 1, 2)))
        for name, f in variants.items()
    }
    for f in fns.values():
        jax.block_until_ready(f(q, k, v))
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(args.rounds):
        for name, f in fns.items():
            t0 = time.perf_counter()
            jax.block_until_ready(f(q, k, v))
            times[name].append(time.perf_counter() - t0)
    base = statistics.median(times["xla"])
    print(
        f"shape {shape} window {args.window}: fwd+bwd, median of {args.rounds} interleaved rounds"
    )
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:10s} {med * 1e3:8.1f} ms  ({base / med:.2f}× xla)")


if __name__ == "__main__":
    main()
