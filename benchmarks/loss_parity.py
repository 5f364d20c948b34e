"""Loss per token: the JAX engine vs the PyTorch nanochat-architecture reference, same tokens.

Both sides train the same model (a prefab, ``tiny`` by default) from the same weights (the JAX
engine's init for each seed, copied into torch; ``--own-init``: each side draws its own, with the
same init scheme), the same optimizer split and hyper-parameters (Muon for block matrices, AdamW for
embedding / lm head, nanochat's learning rates) at a constant learning rate, on the identical
sequence of batches cut from the embedded corpus by the engine's own tokenizer and loader. Then each
scores the same held-out validation batches.

The learning-rate schedule, Muon momentum warmup and gradient clipping are switched off on the JAX
side, because the PyTorch reference has none of them: this compares model + optimizer, not
schedules. Several seeds per side show how much of a gap is just initialisation noise; from shared
weights a gap is the implementations' alone (docs/model.md: the 2026 gap that was init noise).

    uv run python benchmarks/loss_parity.py [--prefab tiny] [--steps 120] [--seeds 6]
        [--val-batches 8] [--torch-python PY] [--recipe nanochat-2026]

With ``--recipe nanochat-2026`` both sides run nanochat's current model and optimizer (the PyTorch
side is torch_recipe2026.py); the lr stays constant and the Muon momentum fixed, while the Muon
weight decay follows its cosine over the run on both sides and the batch-size lr factor is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("NANOCHAT_TUI_HOME", tempfile.mkdtemp(prefix="nanochat-parity-"))

# the reference has no schedule, momentum warmup or clipping: switch them off here as well
PARITY = [
    "optim.warmup_ratio=0",
    "optim.warmdown_ratio=0",
    "optim.muon_momentum_warmup_steps=0",
    "optim.grad_clip=0",
]


def make_data(config, steps: int, val_batches: int, path: Path) -> None:
    """Write ``steps`` training batches and ``val_batches`` validation batches to ``path`` (npz)."""
    import numpy as np

    from nanochat_tui.jax_engine.data import BatchLoader, build_splits
    from nanochat_tui.jax_engine.tokenizer import get_tokenizer

    tokenizer = get_tokenizer(config, log=print)
    splits = build_splits(config, tokenizer, log=print)
    seq, bsz = config.model.sequence_len, config.train.device_batch_size

    def batches(tokens, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        loader = BatchLoader(tokens, seq, bsz, seed, prefetch=0)
        xs, ys = zip(*(loader.next() for _ in range(n)), strict=True)
        return np.stack(xs).astype(np.int32), np.stack(ys).astype(np.int32)

    x, y = batches(splits.train, steps, config.train.seed)
    val_x, val_y = batches(splits.val, val_batches, 0)
    np.savez(path, x=x, y=y, val_x=val_x, val_y=val_y)


def run_jax(config, path: Path, seed: int, init_out: Path | None = None) -> dict[str, Any]:
    import time

    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from nanochat_tui.jax_engine.model import GPT
    from nanochat_tui.jax_engine.optim import build_optimizer
    from nanochat_tui.jax_engine.step import eval_token_losses, make_train_step

    data = np.load(path)
    model = GPT(config.model, rngs=nnx.Rngs(seed))
    if init_out is not None:  # the torch side starts from these very weights
        flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
        np.savez(init_out, **{".".join(map(str, p)): np.asarray(v[...]) for p, v in flat})
    optimizer = nnx.Optimizer(model, build_optimizer(model, config), wrt=nnx.Param)
    step = make_train_step(model, optimizer)
    losses = []
    t0 = time.perf_counter()
    for x, y in zip(data["x"], data["y"], strict=True):
        losses.append(float(step(model, optimizer, jnp.asarray(x), jnp.asarray(y), 1.0).loss))
    step_s = (time.perf_counter() - t0) / len(losses)
    val = [
        float(jnp.mean(eval_token_losses(model, jnp.asarray(x), jnp.asarray(y))))
        for x, y in zip(data["val_x"], data["val_y"], strict=True)
    ]
    return {"losses": losses, "val_loss": float(np.mean(val)), "step_s": step_s}


def run_torch(
    config, path: Path, seed: int, python: str, init: Path | None = None
) -> dict[str, Any]:
    from nanochat_tui.jax_engine.optim import batch_lr_scale, muon_wd_scale

    m = config.model
    script = Path(__file__).with_name("torch_reference.py")
    cmd = [python, str(script), "--depth", str(m.depth), "--aspect-ratio", str(m.aspect_ratio)]
    cmd += ["--head-dim", str(m.head_dim), "--n-kv-head", str(m.n_kv_head or 0)]
    cmd += ["--seq", str(m.sequence_len), "--vocab", str(m.vocab_size)]
    cmd += ["--batch", str(config.train.device_batch_size), "--data", str(path)]
    cmd += ["--seed", str(seed)]
    if init is not None:
        cmd += ["--init", str(init)]
    if m.recipe == "nanochat-2026":
        cmd += ["--recipe", "2026", "--lr-scale", str(batch_lr_scale(config))]
        wd = config.optim.resolved().muon_weight_decay * muon_wd_scale(config)
        cmd += ["--muon-wd", str(wd)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"torch reference failed: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def window_mean(losses: list[float], end: int, width: int = 10) -> float:
    """Mean train loss over the ``width`` steps ending at step ``end`` (1-based)."""
    chunk = losses[max(0, end - width) : end]
    return sum(chunk) / len(chunk)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prefab", default="tiny")
    p.add_argument("--steps", type=int, default=120)
    p.add_argument("--seeds", type=int, default=6, help="initialisations per side")
    p.add_argument("--val-batches", type=int, default=8)
    p.add_argument("--torch-python", default=None, help="a Python with torch (default: search)")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--recipe", default="nanochat-2025", choices=("nanochat-2025", "nanochat-2026"))
    p.add_argument(
        "--own-init",
        action="store_true",
        help="each side draws its own random init (default: torch starts from the JAX weights, "
        "so a gap measures the implementations and the seeds measure init noise)",
    )
    args = p.parse_args(argv)
    if args.seeds < 1 or args.steps < 1:
        p.error("--seeds and --steps must be at least 1")

    sys.path.insert(0, str(Path(__file__).parent))
    from engine_throughput import torch_python
    from nanochat_tui.config.loader import load_config

    parity = [*PARITY, f"model.recipe={args.recipe}", f"train.num_iterations={args.steps}"]
    parity += ["optim.warmup_steps=0"]
    config = load_config(args.prefab, parity)
    b, t = config.train.device_batch_size, config.model.sequence_len
    config = load_config(args.prefab, [*parity, f"train.total_batch_size={b * t}"])
    python = torch_python(args.torch_python)
    if python is None:
        raise SystemExit("no Python with torch found: pip install torch, or pass --torch-python")

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "batches.npz"
        make_data(config, args.steps, args.val_batches, path)
        results: dict[str, list[dict[str, Any]]] = {"jax": [], "torch": []}
        for seed in range(args.seeds):
            init = None if args.own_init else Path(tmp) / f"init-{seed}.npz"
            print(f"seed {seed}: jax …", flush=True)
            results["jax"].append(run_jax(config, path, seed, init))
            print(f"seed {seed}: torch …", flush=True)
            results["torch"].append(run_torch(config, path, seed, python, init))

    marks = sorted({m for m in (1, 10, 25, 50, 100, args.steps) if m <= args.steps})
    print(
        f"\n{args.prefab} ({args.recipe}): {b}×{t} tokens a step, {args.steps} steps, constant lr, "
        f"{args.seeds} seed(s) a side, "
        f"{'own inits' if args.own_init else 'torch from the JAX init'}; "
        "train loss = mean of the 10 steps ending at the step"
    )
    head = "impl   seed " + "".join(f"  step {m:>4}" for m in marks) + "   val loss   ms/step"
    print(head + "\n" + "-" * len(head))
    for impl, runs in results.items():
        for seed, r in enumerate(runs):
            cells = "".join(f"  {window_mean(r['losses'], m):9.4f}" for m in marks)
            print(f"{impl:<6} {seed:>4} {cells}   {r['val_loss']:8.4f}   {1000 * r['step_s']:7.1f}")
    jv = [r["val_loss"] for r in results["jax"]]
    tv = [r["val_loss"] for r in results["torch"]]
    spread = max(max(jv) - min(jv), max(tv) - min(tv))
    gap = statistics.mean(jv) - statistics.mean(tv)
    print(
        f"\nmean val loss: jax {statistics.mean(jv):.4f}  torch {statistics.mean(tv):.4f}  "
        f"gap {gap:+.4f} nats/token  (seed-to-seed spread within a side: {spread:.4f})"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
