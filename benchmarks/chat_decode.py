"""Chat decoding speed: tokens/s of the KV-cached ``generate`` (what the Chat pane, evals and
synthetic data run), with the cache kept one array per layer against one stacked array.

``GPT.init_cache`` used to stack every layer's keys/values into one ``[depth, B, T, kv, hd]``
array, and ``GPT.decode`` re-stacked it after each token, which copied the whole cache every
step although the step donates it. Now each layer's array is updated in place. The ``stacked``
rows rebuild the old behaviour around today's ``decode`` (the same model code; only the cache's
container differs), so both run side by side in one process, alternating, on the same weights.

    uv run python benchmarks/chat_decode.py                       # d4 and d12, 300 tokens
    uv run python benchmarks/chat_decode.py --depths 20 --tokens 200 --repeats 2
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from engine_throughput import _depths


def _at_least_one(text: str) -> int:
    """argparse type: a whole number ≥ 1 (a bad one is a usage error, not a traceback)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 1: {text!r}")
    return value


@contextlib.contextmanager
def stacked_cache() -> Iterator[None]:
    """While active, new caches are one stacked array and each decode re-stacks its output."""
    import jax.numpy as jnp

    from nanochat_tui.jax_engine.model import GPT, KVCache

    init, decode = GPT.init_cache, GPT.decode

    def init_cache(self, batch: int, max_len: int) -> KVCache:
        c = init(self, batch, max_len)
        return KVCache(jnp.stack(c.k), jnp.stack(c.v), c.x_prev)

    def restacking_decode(self, idx, cache, pos):
        logits, c = decode(self, idx, cache, pos)
        return logits, KVCache(jnp.stack(c.k), jnp.stack(c.v), c.x_prev)

    GPT.init_cache, GPT.decode = init_cache, restacking_decode  # type: ignore[method-assign]
    try:
        yield
    finally:
        GPT.init_cache, GPT.decode = init, decode  # type: ignore[method-assign]


def tokens_per_s(model, prompt: list[int], tokens: int) -> float:
    from nanochat_tui.jax_engine.sample import generate

    start, n = time.perf_counter(), 0
    for _ in generate(model, prompt, max_new_tokens=tokens, temperature=0):
        n += 1
    return n / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--depths", type=_depths, default=[4, 12], help="comma list of depths (width 64·depth)"
    )
    p.add_argument("--vocab", type=_at_least_one, default=32768)
    p.add_argument("--prompt", type=_at_least_one, default=100, help="prompt tokens")
    p.add_argument("--tokens", type=_at_least_one, default=300, help="tokens generated per timing")
    p.add_argument(
        "--repeats", type=_at_least_one, default=3, help="timings per layout (alternating)"
    )
    args = p.parse_args(argv)

    import jax
    from flax import nnx

    from nanochat_tui.config.schema import ModelConfig
    from nanochat_tui.jax_engine.model import GPT
    from nanochat_tui.jax_engine.sample import _bucket

    prompt = [1 + i % (args.vocab - 1) for i in range(args.prompt)]
    print(f"device: {jax.default_backend()} ({jax.devices()[0].device_kind})")
    cache = _bucket(_bucket(args.prompt) + args.tokens)
    print(
        f"greedy generate, prompt {args.prompt} tokens, {args.tokens} new, cache {cache} "
        f"positions, median of {args.repeats} (after one untimed run each)"
    )
    print(f"{'depth':>5} {'params':>8} {'per-layer tok/s':>16} {'stacked tok/s':>14} {'×':>6}")
    for depth in args.depths:
        cfg = ModelConfig(
            depth=depth, aspect_ratio=64, head_dim=64, sequence_len=2048, vocab_size=args.vocab
        )
        per_layer, stacked = GPT(cfg, rngs=nnx.Rngs(0)), GPT(cfg, rngs=nnx.Rngs(0))
        with stacked_cache():
            tokens_per_s(stacked, prompt, args.tokens)  # compiled with the old layout in place
        tokens_per_s(per_layer, prompt, args.tokens)
        rates: dict[str, list[float]] = {"per-layer": [], "stacked": []}
        for _ in range(args.repeats):
            rates["per-layer"].append(tokens_per_s(per_layer, prompt, args.tokens))
            with stacked_cache():
                rates["stacked"].append(tokens_per_s(stacked, prompt, args.tokens))
        a, b = (statistics.median(rates[k]) for k in ("per-layer", "stacked"))
        params = sum(x.size for x in jax.tree.leaves(nnx.state(per_layer, nnx.Param)))
        try:
            print(f"{depth:>5} {params / 1e6:>7.1f}M {a:>16.1f} {b:>14.1f} {a / b:>6.2f}")
            sys.stdout.flush()
        except BrokenPipeError:  # `| head` stopped reading: stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
