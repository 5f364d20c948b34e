"""Allocator benchmark: the real jitted train step on glibc's malloc vs mimalloc, side by side.

Each allocator runs in its own process (an allocator is chosen at process start), alternating
A B A B ``--repeats`` times. Reported per step: minor page faults, kernel (sys) and user CPU
seconds, wall seconds and peak RSS. Page faults and CPU seconds barely depend on other load on
the machine; wall time does (the load average is printed).

    uv run python benchmarks/allocator.py [--config d4] [--steps 6] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import jax, jax.numpy as jnp
from flax import nnx
sys.path.insert(0, "benchmarks")
from engine_throughput import make_config
from nanochat_tui import allocator
from nanochat_tui.jax_engine.model import GPT
from nanochat_tui.jax_engine.optim import build_optimizer
from nanochat_tui.jax_engine.step import make_train_step
cfg = make_config(sys.argv[1], None)
steps = int(sys.argv[2])
model = GPT(cfg.model, rngs=nnx.Rngs(0))
opt = nnx.Optimizer(model, build_optimizer(model, cfg), wrt=nnx.Param)
step = make_train_step(model, opt)
b, t, v = cfg.train.device_batch_size, cfg.model.sequence_len, cfg.model.vocab_size
data = jax.random.randint(jax.random.key(0), (b, t + 1), 0, v, jnp.int32)
x, y = data[:, :-1], data[:, 1:]
for _ in range(2):
    float(step(model, opt, x, y, 1.0).loss)
r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
for _ in range(steps):
    float(step(model, opt, x, y, 1.0).loss)
r1, wall = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - t0
print(json.dumps({
    "allocator": allocator.in_use(),
    "faults": (r1.ru_minflt - r0.ru_minflt) / steps,
    "sys": (r1.ru_stime - r0.ru_stime) / steps,
    "user": (r1.ru_utime - r0.ru_utime) / steps,
    "wall": wall / steps,
    "rss_mb": r1.ru_maxrss / 1024,
}))
"""


def run(choice: str, config: str, steps: int) -> dict:
    from nanochat_tui import allocator

    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", allocator.APPLIED_ENV)}
    if choice == "mimalloc":
        env = allocator.environment(env)
    out = subprocess.run(
        [sys.executable, "-c", CHILD, config, str(steps)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="d4", help="a config of engine_throughput.py")
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()
    from nanochat_tui import allocator

    if allocator.library() is None:
        print("mimalloc is not available here (Linux only, cmeel-mimalloc)")
        return 1
    rows: dict[str, list[dict]] = {"system": [], "mimalloc": []}
    for _ in range(args.repeats):
        for choice in rows:
            rows[choice].append(run(choice, args.config, args.steps))
    one = os.getloadavg()[0]
    print(f"config {args.config}, {args.steps} steps × {args.repeats} runs each; load {one:.1f}")
    print(
        f"{'allocator':10} {'faults/step':>12} {'sys s':>7} {'user s':>7} {'wall s':>7} {'RSS MB':>7}"
    )
    for choice, runs in rows.items():
        assert all(r["allocator"] == choice for r in runs), runs
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "allocator"}
        print(
            f"{choice:10} {med['faults']:12,.0f} {med['sys']:7.2f} {med['user']:7.2f} "
            f"{med['wall']:7.2f} {med['rss_mb']:7.0f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
