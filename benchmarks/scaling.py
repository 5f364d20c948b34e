"""Scaling: tokens/s of the real sharded train step on 1, 2, 4, 8 devices, each count in a process
of its own (the device count is fixed when JAX starts).

On CPU the devices are virtual (``JAX_NUM_CPU_DEVICES``): they share the same cores, so the table
shows the *overhead* of the mesh (partitioning, collectives, per-device dispatch), not a speed-up.
Every device runs ``--batch`` sequences (weak scaling: the global batch grows with the mesh). With
``--fsdp`` the parameters and optimizer state are sharded over all devices instead of replicated.
``--compare-gather`` also times nanochat's Muon (recipe nanochat-2026) with and without the
explicit per-matrix gather before Newton–Schulz (sharding.gathered), on the largest mesh.

    uv run python benchmarks/scaling.py                       # 1,2,4,8 virtual CPU devices, tiny
    uv run python benchmarks/scaling.py --fsdp --compare-gather
    uv run python benchmarks/scaling.py --platform gpu --devices 1,8 --config d12   # a GPU host
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

CONFIGS: dict[str, dict[str, Any]] = {
    "tiny": dict(depth=2, aspect_ratio=64, head_dim=64, sequence_len=256, vocab_size=4096),
    "d4": dict(depth=4, aspect_ratio=64, head_dim=64, sequence_len=512, vocab_size=8192),
    "d12": dict(depth=12, aspect_ratio=64, head_dim=128, sequence_len=2048, vocab_size=65536),
}


def child(args: argparse.Namespace) -> dict[str, Any]:
    """Time the step on ``args.child`` devices (runs inside the subprocess)."""
    import jax
    import numpy as np
    from flax import nnx

    from nanochat_tui.config.schema import Config
    from nanochat_tui.jax_engine import muon
    from nanochat_tui.jax_engine.flops import compute_dtype
    from nanochat_tui.jax_engine.model import GPT
    from nanochat_tui.jax_engine.optim import build_optimizer
    from nanochat_tui.jax_engine.sharding import placement
    from nanochat_tui.jax_engine.step import make_train_step

    n = args.child
    model_cfg = {**CONFIGS[args.config], "recipe": args.recipe}
    seq = model_cfg["sequence_len"]
    config = Config.model_validate(
        {
            "model": model_cfg,
            "train": {"device_batch_size": args.batch, "total_batch_size": args.batch * seq * n},
            "mesh": {"data": 1, "fsdp": n} if args.fsdp else {"data": n, "fsdp": 1},
        }
    )
    if args.no_gather:
        muon.gathered = lambda x: x  # GSPMD partitions Newton–Schulz on the sharded matrices itself
    place = placement(config)

    def make():  # built on the mesh, as a run builds it (jax_engine/startup.py)
        model = GPT(config.model, rngs=nnx.Rngs(0), dtype=compute_dtype(config))
        return model, nnx.Optimizer(model, build_optimizer(model, config), wrt=nnx.Param)

    model, optimizer = place.build_sharded(make)
    step = make_train_step(model, optimizer, placement=place)
    rng = np.random.default_rng(0)
    rows = place.layout.accum * place.layout.global_batch
    tokens = rng.integers(0, config.model.vocab_size, (rows, seq + 1), dtype=np.int32)
    x, y = place.put_batch(tokens[:, :-1], tokens[:, 1:])
    t0 = time.perf_counter()
    float(step(model, optimizer, x, y, 1.0).loss)
    compile_s = time.perf_counter() - t0
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        float(step(model, optimizer, x, y, 1.0).loss)
        times.append(time.perf_counter() - t0)
    best = sorted(times)[len(times) // 2]
    return {
        "devices": n,
        "platform": jax.devices()[0].platform,
        "mesh": place.layout.label,
        "global_batch": place.layout.global_batch,
        "tokens_per_step": rows * seq,
        "median_step_s": best,
        "tokens_per_s": rows * seq / best,
        "compile_s": compile_s,
        "gather": not args.no_gather,
        "recipe": args.recipe,
    }


def gather_label(row: dict[str, Any]) -> str:
    """Only nanochat's Muon (2026) gathers explicitly; optax's (2025) is left to GSPMD."""
    if row["recipe"] == "nanochat-2025":
        return "-"
    return "yes" if row["gather"] else "no"


def spawn(args: argparse.Namespace, n: int, no_gather: bool = False) -> dict[str, Any]:
    env = dict(os.environ)
    if args.platform == "cpu":
        env.update(JAX_PLATFORMS="cpu", JAX_NUM_CPU_DEVICES=str(n))
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n}"
    else:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i in range(n))
    cmd = [sys.executable, __file__, "--child", str(n), "--config", args.config]
    cmd += ["--batch", str(args.batch), "--steps", str(args.steps), "--recipe", args.recipe]
    cmd += ["--fsdp"] * args.fsdp + ["--no-gather"] * no_gather
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode or not lines:
        raise SystemExit(f"{n} devices failed:\n{out.stderr[-2000:]}")
    return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--devices", default="1,2,4,8", help="device counts (default 1,2,4,8)")
    ap.add_argument("--platform", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--config", choices=list(CONFIGS), default="tiny")
    ap.add_argument("--batch", type=int, default=2, help="sequences per device (default 2)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--recipe", default="nanochat-2025")
    ap.add_argument("--fsdp", action="store_true", help="shard parameters over every device")
    ap.add_argument("--compare-gather", action="store_true")
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--no-gather", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)), flush=True)
        return
    rows = [spawn(args, int(n)) for n in args.devices.split(",")]
    if args.compare_gather:
        args.recipe = "nanochat-2026"
        n = max(int(n) for n in args.devices.split(","))
        rows += [spawn(args, n), spawn(args, n, no_gather=True)]
    print(f"{'devices':>7} {'mesh':>5} {'recipe':>13} {'gather':>6} {'tok/step':>9} "
          f"{'step ms':>8} {'tok/s':>9} {'vs 1':>6}")  # fmt: skip
    base = rows[0]["tokens_per_s"]
    for r in rows:
        print(
            f"{r['devices']:>7} {r['mesh']:>5} {r['recipe']:>13} "
            f"{gather_label(r):>6} {r['tokens_per_step']:>9} "
            f"{r['median_step_s'] * 1e3:>8.1f} {r['tokens_per_s']:>9.0f} "
            f"{r['tokens_per_s'] / base:>6.2f}"
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)


if __name__ == "__main__":
    main()
