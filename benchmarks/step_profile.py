"""Where a train step's time goes, by source line: an op-level trace of the real step, each XLA op
attributed through the compiled program's stack frames to the project's own code.

Builds the same step as training (``jax_engine.step.make_train_step`` on one of
``engine_throughput.py``'s shapes), traces a few calls with ``jax.profiler`` and reads each op's
time from the trace (XLA:CPU thunks, or GPU/TPU kernels, tagged with their HLO op). The compiled
HLO (dumped by XLA for this run) says which Python line made each op, through its stack frames;
each op counts towards the innermost frame in ``src/nanochat_tui`` (a line, a function or a
file, ``--by``). Dot ops also get their FLOPs from the HLO, so a row shows the matmul rate its
code achieved.

On a CPU, XLA runs independent ops on several threads at once, so the ops' times add up to more
than the step's wall time; a row's share is of the summed op time. Ops inside a ``lax.scan`` count
once per iteration.

    uv run python benchmarks/step_profile.py --configs d4 --recipe nanochat-2026
    uv run python benchmarks/step_profile.py --configs tiny --by function --top 15
    python3 benchmarks/step_profile.py --configs d20 --json d20.json          # on a GPU
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

PROJECT = f"{os.sep}nanochat_tui{os.sep}"


# --------------------------------------------------------------------------- the compiled HLO


@dataclass
class Hlo:
    """What the profile needs from one compiled module's text: each instruction's stack frame
    and dot FLOPs, and the frames' file, function and line."""

    frame_of: dict[str, int] = field(default_factory=dict)  # instruction -> stack frame id
    flops_of: dict[str, int] = field(default_factory=dict)  # instruction -> dot FLOPs per run
    frames: dict[int, tuple[int, int]] = field(default_factory=dict)  # id -> (location, parent)
    locations: dict[int, tuple[str, str, int]] = field(default_factory=dict)

    def chain(self, frame: int) -> list[tuple[str, str, int]]:
        """The (file, function, line) frames of ``frame``, innermost first."""
        out, seen = [], set()
        while frame in self.frames and frame not in seen:
            seen.add(frame)
            location, frame = self.frames[frame]
            if location in self.locations:
                out.append(self.locations[location])
        return out


def _table(text: str, name: str) -> dict[int, str]:
    """A numbered table (``FileNames``, ``StackFrames``, ...) at the end of a module's text."""
    start = text.find(f"\n{name}\n")
    if start < 0:
        return {}
    rows: dict[int, str] = {}
    for line in text[start + len(name) + 2 :].splitlines():
        m = re.match(r"(\d+) (.*)", line)
        if not m:
            break
        rows[int(m.group(1))] = m.group(2)
    return rows


def _fields(row: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", row)}


def _dims(shape: str) -> list[int]:
    """``f32[8,512,256]{2,1,0}`` -> [8, 512, 256] (a scalar or tuple -> [])."""
    m = re.match(r"\w+\[([\d,]*)\]", shape)
    return [int(x) for x in m.group(1).split(",") if x] if m else []


def _dot_flops(op: str, out: list[int], rest: str, shapes: dict[str, list[int]]) -> int:
    """2·(output size)·(contracted size) of a ``dot``, or of a GEMM custom call (cuBLAS/cuBLASLt
    on a GPU, whose dimension numbers sit in its backend config); 0 for anything else."""
    if op == "dot":
        contracting = re.search(r"lhs_contracting_dims=\{([\d,]*)\}", rest)
    elif op == "custom-call" and re.search(r'custom_call_target="[^"]*(gemm|cublas)', rest, re.I):
        contracting = re.search(r'"lhs_contracting_dimensions":\[([^\]]*)\]', rest)
    else:
        return 0
    operands = re.findall(r"%([\w.\-]+)", rest.split(")", 1)[0])
    lhs = shapes.get(operands[0], []) if operands else []
    if not contracting or not lhs:
        return 0
    k = 1
    for i in re.findall(r"\d+", contracting.group(1)):
        if int(i) < len(lhs):
            k *= lhs[int(i)]
    return 2 * math.prod(out) * k


def parse_hlo(text: str) -> Hlo:
    """Stack frames and dot FLOPs of an ``*after_optimizations.txt`` module dump."""
    hlo = Hlo()
    files = {k: v.strip('"') for k, v in _table(text, "FileNames").items()}
    functions = {k: v.strip('"') for k, v in _table(text, "FunctionNames").items()}
    for k, row in _table(text, "FileLocations").items():
        f = _fields(row)
        hlo.locations[k] = (
            files.get(f.get("file_name_id", 0), "?"),
            functions.get(f.get("function_name_id", 0), "?"),
            f.get("line", 0),
        )
    for k, row in _table(text, "StackFrames").items():
        f = _fields(row)
        # XLA's text dump gives a frame's parent as the parent's row + 1 (the outermost: 1)
        hlo.frames[k] = (f.get("file_location_id", 0), f.get("parent_frame_id", 0) - 1)

    shapes: dict[str, list[int]] = {}
    calls: dict[str, str] = {}
    dots: dict[str, int] = {}  # computation -> dot FLOPs inside it
    computation = ""
    for line in text.splitlines():
        head = re.match(r"(?:ENTRY )?%?([\w.\-]+) \(.*\{$", line)
        if head and not line.startswith(" "):
            computation = head.group(1)
            continue
        m = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = (\(.*?\)|\S+) ([\w\-]+)\((.*)", line)
        if not m:
            continue
        name, shape, op, rest = m.groups()
        shapes[name] = _dims(shape.lstrip("("))  # a tuple (a GPU GEMM's): its first element
        frame = re.search(r"stack_frame_id=(\d+)", rest)
        if frame:
            hlo.frame_of[name] = int(frame.group(1))
        called = re.search(r"calls=%([\w.\-]+)", rest)
        if called:
            calls[name] = called.group(1)
        flops = _dot_flops(op, shapes[name], rest, shapes)
        if flops:
            hlo.flops_of[name] = flops
            dots[computation] = dots.get(computation, 0) + flops
    for name, comp in calls.items():
        if comp in dots:
            hlo.flops_of[name] = hlo.flops_of.get(name, 0) + dots[comp]
    return hlo


# --------------------------------------------------------------------------- the trace


def op_events(trace_dir: str, backend: str = "cpu") -> list[dict[str, Any]]:
    """The trace's op events (those tagged with an HLO op): from the device lanes on a GPU/TPU,
    from the host on XLA:CPU."""
    found = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
    if not found:
        raise SystemExit(f"no trace written under {trace_dir}")
    with gzip.open(max(found, key=os.path.getmtime)) as f:
        trace = json.load(f)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    names = {
        e["pid"]: e.get("args", {}).get("name", "")
        for e in events
        if e.get("ph") == "M" and e.get("name") == "process_name"
    }
    ops = [e for e in events if e.get("ph") == "X" and "hlo_op" in e.get("args", {})]
    device = {pid for pid, n in names.items() if n.startswith("/device:")}
    if backend == "cpu":
        return ops
    on_device = [e for e in ops if e["pid"] in device]
    if not on_device:
        raise SystemExit(
            f"the trace has no {backend} kernel events (on NVIDIA, the profiler needs CUPTI: "
            "the nvidia-cuda-cupti package or the CUDA toolkit's extras/CUPTI on the library path)"
        )
    return on_device


def step_module(events: list[dict[str, Any]]) -> str:
    """The HLO module that took the most time: the train step."""
    per: collections.Counter[str] = collections.Counter()
    for e in events:
        per[e["args"].get("hlo_module", "")] += e.get("dur", 0)
    if not per:
        raise SystemExit("the trace has no XLA op events (is the profiler plugin missing?)")
    return per.most_common(1)[0][0]


def dumps(dump_dir: str) -> set[str]:
    """The optimized-HLO module dumps under ``dump_dir``."""
    return {
        path
        for path in glob.glob(os.path.join(dump_dir, "*after_optimizations.txt"))
        if "buffer-assignment" not in path and "memory-usage" not in path
    }


def module_text(paths: set[str], module: str, ops: set[str]) -> str:
    """The optimized HLO text of ``module`` among ``paths`` (of several dumps with that name, the
    one holding the most of the traced ``ops``)."""
    best, best_hits = "", -1
    for path in sorted(paths):
        if f".{module}." not in os.path.basename(path):
            continue
        text = Path(path).read_text()
        hits = sum(1 for op in ops if f"%{op} = " in text)
        if hits > best_hits:
            best, best_hits = text, hits
    if not best:
        raise SystemExit(f"no HLO dump for module {module!r} (is XLA_FLAGS overridden?)")
    return best


def attribute(events: list[dict[str, Any]], hlo: Hlo, by: str, steps: int) -> list[dict]:
    """One row per ``by`` key (line, function, file or op), largest first: ``key``, ``ms`` and
    ``ops`` per step, ``share`` of the summed op time, ``gflop`` per step and ``gflops_per_s``
    (None where the key ran no matmul)."""
    time_of: collections.Counter[str] = collections.Counter()
    flops_of: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    for e in events:
        op = e["args"]["hlo_op"]
        chain = hlo.chain(hlo.frame_of.get(op, -1))
        ours = [f for f in chain if PROJECT in f[0]]
        if ours:
            path, function, line = ours[0]
            name = path.split(PROJECT, 1)[1]
            key = {"file": name, "function": f"{name}:{function}"}.get(
                by, f"{name}:{line} {function}"
            )
            if by == "op":
                key = f"{op} <- {key}"
        elif chain:
            path, function, _ = chain[0]
            key = f"(library) {os.path.basename(path)}:{function}"
        else:
            key = "(XLA) " + re.sub(r"[.]\d+$", "", op)
        time_of[key] += e.get("dur", 0.0)  # microseconds
        flops_of[key] += hlo.flops_of.get(op, 0)
        count[key] += 1
    total = sum(time_of.values()) or 1.0
    rows = []
    for key, us in time_of.most_common():
        gflop = flops_of[key] / steps / 1e9
        ms = us / steps / 1e3
        rows.append(
            {
                "key": key,
                "ms": ms,
                "share": us / total,
                "ops": count[key] / steps,
                "gflop": gflop,
                "gflops_per_s": gflop / (ms / 1e3) if gflop and ms else None,
            }
        )
    return rows


# --------------------------------------------------------------------------- the run


def profile(
    name: str, batch: int | None, recipe: str, steps: int, by: str, trace_dir: str, dump_dir: str
) -> dict[str, Any]:
    """Trace ``steps`` compiled train steps of config ``name`` and attribute their ops (``by``)."""
    import jax

    from engine_throughput import train_setup
    from nanochat_tui.config.estimates import flops_per_token

    config, model, optimizer, step, x, y = train_setup(name, batch, recipe)
    m, b = config.model, config.train.device_batch_size
    before = dumps(dump_dir)

    def run() -> float:
        t0 = time.perf_counter()
        jax.block_until_ready(step(model, optimizer, x, y, 1.0).loss)
        return time.perf_counter() - t0

    compile_s = run()
    wall = [run() for _ in range(max(2, steps))]
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        for _ in range(steps):
            run()
    events = op_events(trace_dir, jax.default_backend())
    module = step_module(events)
    events = [e for e in events if e["args"].get("hlo_module") == module]
    ops = {e["args"]["hlo_op"] for e in events}
    hlo = parse_hlo(module_text(dumps(dump_dir) - before, module, ops))
    dot_flops = sum(hlo.flops_of.get(e["args"]["hlo_op"], 0) for e in events) / steps
    return {
        "config": name,
        "recipe": recipe,
        "batch": b,
        "device": f"{jax.default_backend()} ({jax.devices()[0].device_kind})",
        "first_call_s": compile_s,
        "step_ms": 1e3 * statistics.median(wall),
        "op_ms": sum(e.get("dur", 0.0) for e in events) / steps / 1e3,
        "module": module,
        "dot_gflop": dot_flops / 1e9,
        "model_gflop": flops_per_token(m) * b * m.sequence_len / 1e9,
        "by_file": attribute(events, hlo, "file", steps),
        "rows": attribute(events, hlo, by, steps),
    }


def print_profile(result: dict[str, Any], top: int) -> None:
    print(
        f"\n{result['config']} {result['recipe']} batch {result['batch']} on "
        f"{result['device']}: step {result['step_ms']:.1f} ms (median), ops "
        f"{result['op_ms']:.1f} ms/step summed over threads/streams; first call "
        f"{result['first_call_s']:.1f} s"
    )
    print(
        f"matmul work traced: {result['dot_gflop']:.1f} GFLOP/step (the model's 6N + attention "
        f"estimate: {result['model_gflop']:.1f}; the rest is Muon and masked attention blocks)"
    )
    print(f"{'file':44s} {'ms/step':>8s} {'share':>6s}")
    for r in result["by_file"]:
        print(f"{r['key'][:44]:44s} {r['ms']:8.1f} {100 * r['share']:5.1f}%")
    print(
        f"\n{'where':60s} {'ms/step':>8s} {'share':>6s} {'ops':>5s} {'GFLOP':>7s} {'GFLOP/s':>8s}"
    )
    for r in result["rows"][:top]:
        rate = f"{r['gflops_per_s']:8.0f}" if r["gflops_per_s"] else f"{'':8s}"
        gflop = f"{r['gflop']:7.2f}" if r["gflop"] else f"{'':7s}"
        print(
            f"{r['key'][:60]:60s} {r['ms']:8.1f} {100 * r['share']:5.1f}% "
            f"{r['ops']:5.0f} {gflop} {rate}"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="tiny", help="comma list of engine_throughput's shapes")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--recipe", default="nanochat-2025", choices=("nanochat-2025", "nanochat-2026"))
    p.add_argument("--steps", type=int, default=2, help="steps traced (after a compiled warm-up)")
    p.add_argument(
        "--by",
        default="line",
        choices=("line", "function", "file", "op"),
        help="group by source line (default), function or file; 'op': each XLA op, with its line",
    )
    p.add_argument("--top", type=int, default=30, help="rows printed")
    p.add_argument("--json", default=None, help="write every row here")
    p.add_argument("--keep", default=None, help="keep the trace and HLO dumps in this folder")
    args = p.parse_args(argv)
    from engine_throughput import CONFIGS  # no JAX import there at module level

    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown or not names:
        p.error(
            f"unknown config {', '.join(unknown) or '(none)'}; choose from {', '.join(CONFIGS)}"
        )
    if args.steps < 1:
        p.error("--steps must be at least 1")
    if "jax" in sys.modules:
        raise SystemExit("step_profile must set XLA_FLAGS before JAX is imported")

    work = args.keep or tempfile.mkdtemp(prefix="step-profile-")
    os.makedirs(work, exist_ok=True)
    # the optimized HLO (with stack frames) of every compiled program; op-level trace events on
    # XLA:CPU (GPU/TPU kernels are traced anyway)
    os.environ["XLA_FLAGS"] = " ".join(
        [
            os.environ.get("XLA_FLAGS", ""),
            f"--xla_dump_to={os.path.join(work, 'hlo')}",
            "--xla_dump_hlo_as_text",
            "--xla_dump_hlo_pass_re=^$",
            "--xla_cpu_enable_xprof_traceme=true",
        ]
    ).strip()

    results = []
    try:
        for name in names:
            trace_dir = os.path.join(work, f"trace-{name}")
            dump_dir = os.path.join(work, "hlo")
            result = profile(
                name, args.batch, args.recipe, args.steps, args.by, trace_dir, dump_dir
            )
            results.append(result)
            try:
                print_profile(result, args.top)
                sys.stdout.flush()
            except BrokenPipeError:  # `| head` stopped reading: finish quietly, still write --json
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, sys.stdout.fileno())
                os.close(devnull)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.keep is not None:
        print(f"\ntrace and HLO dumps kept in {work}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
