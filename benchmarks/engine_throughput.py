"""Engine throughput: tokens/s, MFU and peak memory of the real jitted train step and loop.

Times ``jax_engine.step.make_train_step`` (forward + backward + Muon/AdamW update, the same code
path as training) for a few model sizes on whatever device JAX sees, next to the TFLOP/s of a plain
matmul on that device (the roofline). When a Python with PyTorch is found (this one, python3 on
PATH, or --torch-python), benchmarks/torch_reference.py — the nanochat architecture with Muon +
AdamW in eager PyTorch — is timed on the same shapes for a side-by-side comparison.

``--loop`` also runs the whole training loop (``jax_engine.train.train``: real data, prefetch,
one-step-late metric reads, events) on the same shapes and reports tokens/s and where a step's
wall time goes, averaged over the step events after the first (which compiles): ``data`` (waiting
for the next batch), ``compute`` (the host blocked on the device) and ``host`` (the loop's own
work: dispatch, events, control). With the device busy, ``host`` overlaps it and ``compute`` is
the device's step time.

    uv run python benchmarks/engine_throughput.py                     # tiny,d4 on CPU; tiny,d12,d20 on GPU/TPU
    uv run python benchmarks/engine_throughput.py --configs d4 --steps 20 --json out.json
    uv run python benchmarks/engine_throughput.py --configs tiny --loop --no-torch
    uv run python benchmarks/engine_throughput.py --compile-depths 2,8,16,32 --no-torch
    uv run python benchmarks/engine_throughput.py --step-ab 8,16 --recipe nanochat-2026

    uv run python benchmarks/engine_throughput.py --configs d4 --recipe nanochat-2026 --torch-compile

``--recipe`` sets ``model.recipe`` for every row; the PyTorch side then runs the same recipe
(``torch_reference.py --recipe``), ``--torch-compile`` with torch.compile on.

``--step-ab 8,16`` times the compiled step unrolled, scanned per layer and scanned stacked
(``make_train_step(stack=False)`` vs the default), interleaved round by round in one process.

``--compile-depths`` times the train step's compilation at the ``tiny`` width (128) for each
depth, with ``model.scan_layers`` off and on, side by side: the first call of the step less a
second, compiled call (trace, lower and compile; the scanned step compiles one body per
periodic run of blocks, and its weights and optimizer state are stacked, ``stacked.py``), and
the compiled step's time (median of three) both ways. The width is set directly
(``model.width``), so any depth runs.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from typing import Any

# name -> (model overrides, device_batch_size)
CONFIGS: dict[str, tuple[dict[str, Any], int]] = {
    "tiny": (dict(depth=2, aspect_ratio=64, head_dim=64, sequence_len=256, vocab_size=4096), 16),
    "d4": (dict(depth=4, aspect_ratio=64, head_dim=64, sequence_len=512, vocab_size=8192), 8),
    "d12": (dict(depth=12, aspect_ratio=64, head_dim=128, sequence_len=2048, vocab_size=65536), 16),
    "d20": (dict(depth=20, aspect_ratio=64, head_dim=128, sequence_len=2048, vocab_size=65536), 16),
}


def make_config(name: str, batch: int | None, recipe: str = "nanochat-2025"):
    from nanochat_tui.config.schema import Config

    if name not in CONFIGS:
        raise SystemExit(f"unknown config {name!r}; choose from {', '.join(CONFIGS)}")
    model, default_batch = CONFIGS[name]
    b = batch or default_batch
    return Config.model_validate(
        {
            "model": {**model, "recipe": recipe},
            "train": {"device_batch_size": b, "total_batch_size": b * model["sequence_len"]},
        }
    )


def peak_memory_bytes() -> tuple[int | None, str]:
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        return int(stats["peak_bytes_in_use"]), "device"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "process RSS"


def train_setup(name: str, batch: int | None, recipe: str):
    """``(config, model, optimizer, step, x, y)`` for config ``name``: the train step as training
    builds it (``make_train_step``, in the run's compute dtype) and one random batch."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from nanochat_tui.jax_engine.flops import compute_dtype
    from nanochat_tui.jax_engine.model import GPT
    from nanochat_tui.jax_engine.optim import build_optimizer
    from nanochat_tui.jax_engine.step import make_train_step

    config = make_config(name, batch, recipe)
    m, b = config.model, config.train.device_batch_size
    model = GPT(m, rngs=nnx.Rngs(0), dtype=compute_dtype(config))
    optimizer = nnx.Optimizer(model, build_optimizer(model, config), wrt=nnx.Param)
    step = make_train_step(model, optimizer)
    data = jax.random.randint(
        jax.random.key(0), (b, m.sequence_len + 1), 0, m.vocab_size, jnp.int32
    )
    return config, model, optimizer, step, data[:, :-1], data[:, 1:]


def bench_jax(name: str, steps: int, batch: int | None, recipe: str) -> dict[str, Any]:
    """Time the jitted train step for one config."""
    import jax.numpy as jnp

    from nanochat_tui.config.estimates import flops_per_token, num_params
    from nanochat_tui.jax_engine.flops import compute_dtype, device_summary, mfu

    config, model, optimizer, step, x, y = train_setup(name, batch, recipe)
    m, b = config.model, config.train.device_batch_size
    dtype = compute_dtype(config)

    t0 = time.perf_counter()
    float(step(model, optimizer, x, y, 1.0).loss)
    compile_s = time.perf_counter() - t0
    float(step(model, optimizer, x, y, 1.0).loss)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step(model, optimizer, x, y, 1.0).loss
    final_loss = float(loss)  # one host sync at the end
    elapsed = time.perf_counter() - t0

    tokens_per_s = b * m.sequence_len * steps / elapsed
    dev = device_summary()
    fpt = flops_per_token(m)
    mem, mem_kind = peak_memory_bytes()
    return {
        "impl": "jax",
        "config": name,
        "params": num_params(m),
        "batch": b,
        "seq": m.sequence_len,
        "dtype": jnp.dtype(dtype).name,
        "step_ms": 1000 * elapsed / steps,
        "tokens_per_s": tokens_per_s,
        "tflops": tokens_per_s * fpt / 1e12,
        "mfu": mfu(tokens_per_s, fpt, dev["peak_flops"]),
        "peak_mem_gib": mem / 2**30 if mem else None,
        "mem_kind": mem_kind,
        "compile_s": compile_s,
        "loss": final_loss,
    }


def _tiny_step(depth: int, scan: bool, recipe: str, stack: bool = True):
    """``(run, first_s)``: the ``tiny`` shape's train step at ``depth`` layers (width 128),
    called once (``first_s``: that call, compile included); ``run()`` is one more step."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from nanochat_tui.config.schema import Config
    from nanochat_tui.jax_engine.model import GPT
    from nanochat_tui.jax_engine.optim import build_optimizer
    from nanochat_tui.jax_engine.step import make_train_step

    base, b = CONFIGS["tiny"]
    model_cfg = {**base, "depth": depth, "width": 128, "head_dim": 32}
    model_cfg.update(scan_layers=scan, recipe=recipe)
    train_cfg = {"device_batch_size": b, "total_batch_size": b * model_cfg["sequence_len"]}
    config = Config.model_validate({"model": model_cfg, "train": train_cfg})
    model = GPT(config.model, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, build_optimizer(model, config), wrt=nnx.Param)
    step = make_train_step(model, optimizer, stack=stack)
    x = jnp.zeros((b, config.model.sequence_len), jnp.int32)

    def run() -> None:
        jax.block_until_ready(step(model, optimizer, x, x, 1.0).loss)

    t0 = time.perf_counter()
    run()
    return run, time.perf_counter() - t0


def compile_seconds(depth: int, scan: bool, recipe: str) -> tuple[float, float]:
    """Seconds to lower and compile the train step of the ``tiny`` shape at ``depth`` layers,
    and the median seconds of three compiled steps after it."""
    run, first = _tiny_step(depth, scan, recipe)
    steps = []
    for _ in range(3):
        t0 = time.perf_counter()
        run()
        steps.append(time.perf_counter() - t0)
    one = sorted(steps)[1]
    return first - one, one  # the first call less one compiled step


def step_ab(depth: int, recipe: str, rounds: int = 6) -> dict[str, float]:
    """Median seconds of the compiled train step at ``depth`` (``tiny`` width 128), unrolled,
    scanned with the per-layer step and scanned with the stacked one, interleaved round by
    round in one process so that machine noise hits all three alike."""
    import numpy as np

    variants = {
        "unrolled": _tiny_step(depth, False, recipe)[0],
        "scan per-layer": _tiny_step(depth, True, recipe, stack=False)[0],
        "scan stacked": _tiny_step(depth, True, recipe)[0],
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    medians = {k: float(np.median(v)) for k, v in times.items()}
    for name, t in medians.items():
        print(f"step  {recipe} depth {depth:3d}  {name:15s} {1e3 * t:8.0f} ms", flush=True)
    return medians


def bench_compile(depths: list[int], recipe: str) -> list[dict[str, Any]]:
    rows = []
    for depth in depths:
        plain, plain_step = compile_seconds(depth, False, recipe)
        scanned, scan_step = compile_seconds(depth, True, recipe)
        rows.append(
            {
                "depth": depth,
                "plain_s": plain,
                "scan_s": scanned,
                "plain_step_s": plain_step,
                "scan_step_s": scan_step,
            }
        )
        print(
            f"compile  depth {depth:3d}  plain {plain:6.2f}s  scan {scanned:6.2f}s  "
            f"ratio {plain / scanned:5.2f}×   step  plain {1e3 * plain_step:7.1f} ms  "
            f"scan {1e3 * scan_step:7.1f} ms",
            flush=True,
        )
    return rows


def bench_loop(name: str, steps: int, batch: int | None, recipe: str) -> dict[str, Any]:
    """Run the real training loop for ``steps`` + 1 steps on the embedded corpus; average the
    step events after the first (the compile)."""
    import statistics
    import tempfile
    from pathlib import Path

    from nanochat_tui.config.loader import validate
    from nanochat_tui.jax_engine.train import train

    base = make_config(name, batch, recipe).model_dump(mode="json")
    base["data"] = {"max_chars": 3_000_000, "tokenizer_chars": 1_000_000}
    base["train"].update(
        num_iterations=steps + 1, eval_every=0, sample_every=0, save_every=0, eval_tokens=1024
    )
    config = validate(base, f"loop {name}")
    events: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        result = train(config, Path(tmp) / "bench", events.append)
    if result.status != "finished":
        raise SystemExit(f"loop benchmark for {name} failed: {result.error}")
    timed = [e for e in events if e["type"] == "step"][1:]
    phases = {e["phase"]: e["elapsed_s"] for e in events if e["type"] == "phase"}

    def mean(key: str) -> float:
        return statistics.fmean(e[key] for e in timed)

    mem, mem_kind = peak_memory_bytes()
    return {
        "config": name,
        "steps": len(timed),
        "tokens_per_s": config.train.total_batch_size / mean("step_time"),
        "step_ms": 1000 * mean("step_time"),
        "data_ms": 1000 * mean("data_wait"),
        "compute_ms": 1000 * mean("compute_time"),
        "host_ms": 1000 * mean("host_time"),
        "mfu": statistics.fmean(e["mfu"] for e in timed) if timed[0].get("mfu") else None,
        "compile_s": phases.get("first_step", 0.0) - phases.get("compile", 0.0),
        "peak_mem_gib": mem / 2**30 if mem else None,
        "mem_kind": mem_kind,
    }


def torch_python(explicit: str | None) -> str | None:
    """An interpreter that can import torch: --torch-python, this one, or any python3 on PATH."""
    import os
    import subprocess

    on_path = [os.path.join(d, "python3") for d in os.environ.get("PATH", "").split(os.pathsep)]
    for cand in [explicit, sys.executable, *[p for p in on_path if os.access(p, os.X_OK)]]:
        if (
            cand
            and subprocess.run([cand, "-c", "import torch"], capture_output=True).returncode == 0
        ):
            return cand
    return None


def bench_torch(
    name: str, steps: int, batch: int | None, python: str, recipe: str, compiled: bool
) -> dict[str, Any] | None:
    """The nanochat-architecture PyTorch yardstick (benchmarks/torch_reference.py: fwd+bwd, Muon +
    AdamW, eager as nanochat runs on CPU) on the same shapes, in a subprocess of ``python``."""
    import subprocess
    from pathlib import Path

    from nanochat_tui.config.estimates import flops_per_token, num_params

    m = make_config(name, batch, recipe).model
    b = batch or CONFIGS[name][1]
    script = Path(__file__).with_name("torch_reference.py")
    cmd = [python, str(script), "--depth", str(m.depth), "--aspect-ratio", str(m.aspect_ratio)]
    cmd += [
        "--head-dim",
        str(m.head_dim),
        "--seq",
        str(m.sequence_len),
        "--vocab",
        str(m.vocab_size),
    ]
    cmd += ["--batch", str(b), "--steps", str(steps), "--warmup", "2"]
    cmd += ["--recipe", recipe.removeprefix("nanochat-")] + (["--compile"] if compiled else [])
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"torch reference failed for {name}: {proc.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "impl": "torch",
        "config": name,
        "params": num_params(m),
        "batch": b,
        "seq": m.sequence_len,
        "dtype": "float32",
        "step_ms": 1000 * out["step_s"],
        "tokens_per_s": out["tokens_per_s"],
        "tflops": out["tokens_per_s"] * flops_per_token(m) / 1e12,
        "mfu": None,
        "peak_mem_gib": None,
        "mem_kind": "",
        "compile_s": None,
        "loss": out["loss"],
    }


def matmul_row() -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    from nanochat_tui.jax_engine.flops import matmul_flops

    on_accel = jax.default_backend() != "cpu"
    n, dtype = (8192, jnp.bfloat16) if on_accel else (1024, jnp.float32)
    return {
        "n": n,
        "dtype": jnp.dtype(dtype).name,
        "tflops": matmul_flops(n, dtype, repeats=10) / 1e12,
    }


def fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _depths(text: str) -> list[int]:
    """A comma list of depths ≥ 1 (argparse type: a bad one is a usage error, not a traceback)."""
    try:
        depths = [int(d) for d in text.split(",") if d.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of depths: {text!r}") from None
    if not depths or min(depths) < 1:
        raise argparse.ArgumentTypeError(f"depths must be whole numbers ≥ 1: {text!r}")
    return depths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default=None, help=f"comma list of {', '.join(CONFIGS)}")
    p.add_argument("--steps", type=int, default=10, help="timed steps per config (after 2 warm-up)")
    p.add_argument("--batch", type=int, default=None, help="override device batch size")
    p.add_argument("--json", default=None, help="also write the results to this JSON file")
    p.add_argument("--no-torch", action="store_true", help="skip the PyTorch comparison")
    p.add_argument("--torch-python", default=None, help="a Python with torch for the comparison")
    p.add_argument(
        "--loop", action="store_true", help="also time the whole training loop (step-time split)"
    )
    p.add_argument(
        "--compile-depths",
        type=_depths,
        default=None,
        help="comma list of depths: compile time with and without model.scan_layers, then exit",
    )
    p.add_argument(
        "--step-ab",
        type=_depths,
        default=None,
        help="comma list of depths: compiled step time unrolled / scanned per-layer / scanned "
        "stacked, interleaved in one process, then exit",
    )
    p.add_argument(
        "--recipe",
        default="nanochat-2025",
        choices=("nanochat-2025", "nanochat-2026"),
        help="model.recipe of every row (the torch side runs the same recipe)",
    )
    p.add_argument(
        "--torch-compile", action="store_true", help="torch.compile the PyTorch reference"
    )
    args = p.parse_args(argv)

    import jax

    if args.step_ab:
        rows = [{"depth": d, **step_ab(d, args.recipe)} for d in args.step_ab]
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"step_ab": rows}, f, indent=2)
        return 0
    if args.compile_depths:
        depths = args.compile_depths
        print(f"device: {jax.devices()[0].device_kind}; recipe {args.recipe}; width 128, seq 256")
        print("(compile = first step call minus a second, compiled one)")
        rows = bench_compile(depths, args.recipe)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"compile": rows}, f, indent=2)
        return 0

    from nanochat_tui.jax_engine.flops import device_summary

    dev = device_summary()
    default = "tiny,d4" if jax.default_backend() == "cpu" else "tiny,d12,d20"
    names = [c.strip() for c in (args.configs or default).split(",") if c.strip()]
    peak = dev["peak_flops"]
    print(
        f"device: {dev['device_kind']} ×{dev['count']} ({dev['platform']}), "
        f"peak {fmt(peak and peak / 1e12, '.1f')} TFLOP/s"
        + (" (measured fp32 matmul)" if dev["platform"] == "cpu" else " (bf16 datasheet)")
    )
    mm = matmul_row()
    print(f"roofline: {mm['n']}×{mm['n']} {mm['dtype']} matmul {mm['tflops']:.2f} TFLOP/s")

    tpy = None if args.no_torch else torch_python(args.torch_python)
    if not args.no_torch and tpy is None:
        print("torch comparison skipped: no Python with torch found (--torch-python PATH)")
    rows = []
    for name in names:
        rows.append(bench_jax(name, args.steps, args.batch, args.recipe))
        if tpy:
            t = bench_torch(name, args.steps, args.batch, tpy, args.recipe, args.torch_compile)
            if t:
                rows.append(t)
    head = f"{'impl':6} {'config':6} {'params':>9} {'B×T':>10} {'dtype':9} {'ms/step':>9} "
    head += f"{'tok/s':>10} {'TFLOP/s':>8} {'MFU':>6} {'peak mem':>14} {'compile':>8}"
    print(head)
    print("-" * len(head))
    for r in rows:
        mem = "-" if r["peak_mem_gib"] is None else f"{r['peak_mem_gib']:.2f}G {r['mem_kind'][:6]}"
        print(
            f"{r['impl']:6} {r['config']:6} {r['params'] / 1e6:8.1f}M {r['batch']:>4}×{r['seq']:<5} "
            f"{r['dtype']:9} {r['step_ms']:9.1f} {r['tokens_per_s']:10,.0f} {r['tflops']:8.3f} "
            f"{fmt(r['mfu'] and 100 * r['mfu'], '5.1f'):>5}% {mem:>14} {fmt(r['compile_s'], '7.1f'):>7}s"
        )
    loops = (
        [bench_loop(name, args.steps, args.batch, args.recipe) for name in names]
        if args.loop
        else []
    )
    if loops:
        head = f"\n{'loop':6} {'tok/s':>10} {'ms/step':>9} {'data':>8} {'compute':>8} {'host':>8} "
        head += f"{'MFU':>6} {'compile':>8} {'peak mem':>14}"
        print(head)
        print("-" * len(head.strip()))
        for r in loops:
            mem = (
                "-"
                if r["peak_mem_gib"] is None
                else f"{r['peak_mem_gib']:.2f}G {r['mem_kind'][:6]}"
            )
            print(
                f"{r['config']:6} {r['tokens_per_s']:10,.0f} {r['step_ms']:9.1f} "
                f"{r['data_ms']:8.1f} {r['compute_ms']:8.1f} {r['host_ms']:8.1f} "
                f"{fmt(r['mfu'] and 100 * r['mfu'], '5.1f'):>5}% {r['compile_s']:7.1f}s {mem:>14}"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": dev, "matmul": mm, "rows": rows, "loop": loops}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
