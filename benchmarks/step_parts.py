"""Where a train step's time goes: the whole step next to its parts, timed alone.

For each config (``engine_throughput.py``'s shapes) this times, as separately jitted programs on
the same weights and batch: the whole step (``make_train_step``), the loss forward alone, the
forward + backward (``value_and_grad``), the optimizer update alone (on fixed gradients) under
each fp32 matmul precision, and one layer's causal attention forward + backward through each
kernel the engine may pick. The parts' sum vs the step says what XLA overlaps or fuses; the
forward + backward's own MFU says how far the model's math is from the chip, apart from Muon.

    uv run python benchmarks/step_parts.py --configs tiny
    python3 benchmarks/step_parts.py --configs d12,d20 --recipe nanochat-2026   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from engine_throughput import CONFIGS, train_setup


def timed(fn, *args, reps: int = 10) -> float:
    """Median seconds of ``fn(*args)`` (compiled first, each call waited for)."""
    import jax
    import numpy as np

    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def attention_times(b: int, t: int, h: int, kv: int, d: int, dtype, window) -> dict[str, Any]:
    """Forward + backward of one layer's causal attention through each implementation."""
    import jax
    import jax.numpy as jnp

    from nanochat_tui.jax_engine.attention import causal_attention

    keys = jax.random.split(jax.random.key(1), 3)
    q = jax.random.normal(keys[0], (b, t, h, d), dtype)
    k = jax.random.normal(keys[1], (b, t, kv, d), dtype)
    v = jax.random.normal(keys[2], (b, t, kv, d), dtype)
    local = None if window is None else (window, 0)

    def loss(f):
        return jax.jit(jax.grad(lambda q, k, v: f(q, k, v).astype(jnp.float32).sum(), (0, 1, 2)))

    impls = {
        "engine": lambda q, k, v: causal_attention(q, k, v, window),
        "xla": lambda q, k, v: jax.nn.dot_product_attention(
            q, k, v, is_causal=True, local_window_size=local, implementation="xla"
        ),
    }
    if jax.default_backend() == "gpu":
        impls["cudnn"] = lambda q, k, v: jax.nn.dot_product_attention(
            q, k, v, is_causal=True, local_window_size=local, implementation="cudnn"
        )
    out: dict[str, Any] = {}
    for name, f in impls.items():
        try:
            out[name] = 1e3 * timed(loss(f), q, k, v)
        except Exception as err:  # an implementation this device/version lacks
            out[name] = f"failed: {type(err).__name__}: {str(err)[:120]}"
    return out


def parts(name: str, batch: int | None, recipe: str, reps: int) -> dict[str, Any]:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from nanochat_tui.config.estimates import flops_per_token
    from nanochat_tui.config.schema import Config
    from nanochat_tui.jax_engine.flops import compute_dtype, device_summary, mfu
    from nanochat_tui.jax_engine.optim import build_optimizer
    from nanochat_tui.jax_engine.step import token_loss_sum

    config, model, optimizer, step, x, y = train_setup(name, batch, recipe)
    m, b = config.model, config.train.device_batch_size
    dtype = compute_dtype(config)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_of(p, x, y):
        total, count, _ = token_loss_sum(nnx.merge(graphdef, p, rest), x, y)
        return total / count

    row: dict[str, Any] = {"config": name, "recipe": recipe, "batch": b}
    row["forward_ms"] = 1e3 * timed(jax.jit(loss_of), params, x, y, reps=reps)
    grad_fn = jax.jit(jax.value_and_grad(loss_of))
    row["fwd_bwd_ms"] = 1e3 * timed(grad_fn, params, x, y, reps=reps)
    grads = grad_fn(params, x, y)[1]

    for ns in ("float32", "bfloat16"):  # Newton–Schulz operands (train.dtype picks them)
        dumped = config.model_dump(mode="json")
        dumped["train"]["dtype"] = ns
        tx = build_optimizer(model, Config.model_validate(dumped))
        state = tx.init(params)

        def update(g, s, p, tx=tx):
            u, s = tx.update(g, s, p, lr_scale=jnp.float32(1.0))
            return jax.tree.map(jnp.add, p, u), s

        row[f"optimizer_{ns}_ms"] = 1e3 * timed(jax.jit(update), grads, state, params, reps=reps)
    del grads, state

    row["step_ms"] = 1e3 * timed(lambda: step(model, optimizer, x, y, 1.0).loss, reps=reps)

    fpt = flops_per_token(m)
    peak = device_summary()["peak_flops"]
    tokens = b * m.sequence_len
    row["step_mfu"] = mfu(tokens / (row["step_ms"] / 1e3), fpt, peak)
    row["fwd_bwd_mfu"] = mfu(tokens / (row["fwd_bwd_ms"] / 1e3), fpt, peak)
    row["attention_ms"] = attention_times(
        b, m.sequence_len, m.n_head, m.kv_heads, m.head_dim, dtype, None
    )
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="tiny", help=f"comma list of {', '.join(CONFIGS)}")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--recipe", default="nanochat-2025", choices=("nanochat-2025", "nanochat-2026"))
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    rows = []
    for name in args.configs.split(","):
        row = parts(name.strip(), args.batch, args.recipe, args.reps)
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(
        f"\n{'config':7s} {'step':>8s} {'fwd':>8s} {'fwd+bwd':>8s} {'opt f32':>8s} {'opt bf16':>8s} "
        f"{'MFU':>6s} {'fb MFU':>6s}  attention fwd+bwd ms (one layer)"
    )
    for r in rows:
        att = "  ".join(
            f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
            for k, v in r["attention_ms"].items()
        )
        print(
            f"{r['config']:7s} {r['step_ms']:8.1f} {r['forward_ms']:8.1f} {r['fwd_bwd_ms']:8.1f} "
            f"{r['optimizer_float32_ms']:8.1f} {r['optimizer_bfloat16_ms']:8.1f} "
            f"{100 * (r['step_mfu'] or 0):5.1f}% "
            f"{100 * (r['fwd_bwd_mfu'] or 0):5.1f}%  {att}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
