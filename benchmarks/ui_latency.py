"""UI latency and TUI overhead benchmark for the Live pane.

Drives the real app headless (``App.run_test`` + Pilot, 160×48). Every frame is also rendered to
the ANSI string a terminal would receive (the headless driver normally skips that), so the cost of
output is included.

Two latencies per press, from just before the key press (no sleeps in the measurement):
  * frame     until the first frame written to the terminal after the pane handled the key (the
              repaint the user sees);
  * callback  until the ``call_after_refresh`` callback the action schedules has run
              (``LivePane.action_paint_count``): that frame, plus the messages Textual delivers after
              it (Show/Resize events, the screen's callback queue), usually 3-8 ms more.
Before measuring, every live screen is shown once and that first visit is reported on its own
line: it can cost more than later switches, because panels changed while their screen was hidden
(a chart built after the switch, a panel that lost focus) render when shown. Keys, alternated in pairs so the layout is the same at the end:
  * switch  ``]`` / ``[``  next / previous live screen (a display toggle; no remount)
  * action  ``+`` / ``-``  refresh faster / slower (restarts the timer, forces a redraw, toasts)
Presses are spaced 30..90 ms apart (fixed seed) so they land at every phase of the redraw timer.

Scenarios:
  1. synthetic: a writer thread appends step events to events.jsonl at ``--rate``/s (independent
     of training speed and of the CPU a training run would take);
  2. training: a real tiny training run started from the TUI (thread mode, same process: worst
     case for the GIL), latency measured while it streams;
  3. tokens/s: the same tiny run headless vs. with the TUI attached and watching (Live pane,
     no key presses), interleaved ``--repeats`` times; median/min/max, per-pair slowdown, the
     per-thread CPU of this process (% of a core) and median step/compute/host/data times;
  4. the operators' setup: a detached run alone vs. watched by a TUI in this process,
     ``--detached-repeats`` pairs, with the TUI process's CPU while it watched.

    uv run python benchmarks/ui_latency.py [--rate 200] [--presses 40] [--steps 300] [--repeats 3]
        [--detached-repeats 3] [--skip-latency] [--skip-training] [--skip-throughput]

Targets: p99 ≤ 50 ms; ≤ 2 % training slowdown. Check ``uptime``: load from other processes on
the machine shows up in every number; the script prints the load average next to the results.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("NANOCHAT_TUI_HOME", tempfile.mkdtemp(prefix="nanochat-bench-"))
os.environ.setdefault("WANDB_MODE", "offline")

TINY = [
    "model.depth=1", "model.aspect_ratio=64", "model.head_dim=32", "model.sequence_len=64",
    "model.vocab_size=512", "data.max_chars=200000", "data.tokenizer_chars=50000",
    "train.device_batch_size=4", "train.total_batch_size=256", "train.eval_every=0",
    "train.sample_every=0", "train.save_every=0", "train.eval_tokens=2048",
]  # fmt: skip
KEYS = {
    "switch": ("right_square_bracket", "left_square_bracket"),
    "action": ("plus", "minus"),
}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} (5 min {five:.2f}) on {os.cpu_count()} cpus"


def summary(name: str, lat: list[float]) -> str:
    return (
        f"   {name:<16} p50 {pct(lat, 50):6.1f} ms   p99 {pct(lat, 99):6.1f} ms"
        f"   max {max(lat):6.1f} ms   n={len(lat)}"
    )


def thread_cpu() -> dict[int, tuple[str, float]]:
    """CPU seconds per thread of this process (Linux /proc): {tid: (name, seconds)}.

    Python threads are named by ``threading``; native ones (XLA's pools) by their ``comm``.
    """
    names = {t.native_id: t.name for t in threading.enumerate()}
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float]] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            with open(f"/proc/self/task/{tid}/comm") as fh:
                comm = fh.read().strip()
        except OSError:
            continue
        name = names.get(int(tid))
        name = ("run-thread" if name.startswith("run-") else name) if name else "xla:" + comm
        out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return out


class CpuWatch:
    """Per-thread CPU between creation and the last ``sample`` (threads that end are kept)."""

    def __init__(self) -> None:
        self.first = thread_cpu()
        self.last = dict(self.first)
        self.t0 = time.perf_counter()
        self.t1 = self.t0

    def sample(self) -> None:
        self.last.update(thread_cpu())
        self.t1 = time.perf_counter()

    def report(self) -> str:
        delta: dict[str, float] = {}
        for tid, (name, cpu) in self.last.items():
            used = cpu - self.first.get(tid, (name, 0.0))[1]
            if used > 0:
                delta[name] = delta.get(name, 0.0) + used
        return fmt_cpu(delta, max(1e-6, self.t1 - self.t0))


def fmt_cpu(delta: dict[str, float], wall: float, top: int = 8) -> str:
    """'name 12% · name 3% ...' as percent of one core over ``wall`` seconds."""
    items = sorted(delta.items(), key=lambda kv: -kv[1])[:top]
    total = sum(delta.values())
    body = " · ".join(f"{k} {100 * v / wall:.0f}%" for k, v in items)
    return f"total {100 * total / wall:.0f}% of a core: {body}"


def emulate_terminal(app: Any) -> None:
    """Render every compositor update to the ANSI text a real terminal would get (and drop it)."""
    original = app._display

    def display(screen: Any, renderable: Any) -> None:
        original(screen, renderable)
        if renderable is not None and hasattr(renderable, "render_segments"):
            renderable.render_segments(app.console)

    app._display = display


def stream_events(path: Path, rate: float, stop: threading.Event) -> None:
    """Append step events at ``rate`` per second (batched every 10 ms)."""
    from nanochat_tui.telemetry.events import make_event
    from nanochat_tui.telemetry.jsonl import JsonlWriter

    writer = JsonlWriter(path)
    writer(make_event("run_start", run_name="stream", num_iterations=10**7, tokens_per_step=8192))
    step, t0 = 0, time.perf_counter()
    while not stop.is_set():
        due = int((time.perf_counter() - t0) * rate)
        while step < due:
            step += 1
            writer(make_event("step", step=step, loss=3 + 1 / step**0.5, tokens=step * 8192, tokens_per_s=16000.0,
                              step_time=0.005, data_wait=0.0005, compute_time=0.004, host_time=0.0005))  # fmt: skip
        time.sleep(0.01)
    writer.close()


class FrameClock:
    """When frames reach the terminal, and when the Live pane last handled an action key."""

    def __init__(self, app: Any, live: Any) -> None:
        self.frames: list[float] = []
        self.handled = 0.0
        display = app._display

        def timed_display(screen: Any, renderable: Any) -> None:
            display(screen, renderable)
            if renderable is not None:
                self.frames.append(time.perf_counter())

        app._display = timed_display
        after_switch = live._after_switch  # the last step of a switch or refresh-rate action

        def marked() -> None:
            self.handled = time.perf_counter()
            after_switch()

        live._after_switch = marked

    def first_frame_after(self, t: float) -> float | None:
        i = bisect.bisect_left(self.frames, t)
        return self.frames[i] if i < len(self.frames) else None


async def _press_and_time(
    pilot: Any, live: Any, clock: FrameClock, key: str
) -> tuple[float, float]:
    """(frame, callback) latency in ms of one key press; 5000 for a repaint that never came."""
    before = live.action_paint_count
    t0 = time.perf_counter()
    await pilot.press(key)
    deadline = t0 + 5.0
    while live.action_paint_count == before and time.perf_counter() < deadline:
        await asyncio.sleep(0.0005)
    if live.action_paint_count == before:
        return 5000.0, 5000.0
    frame = clock.first_frame_after(clock.handled) if clock.handled >= t0 else None
    callback = (live.last_action_paint - t0) * 1000
    return ((frame - t0) * 1000 if frame is not None else callback), callback


async def measure(app: Any, pilot: Any, presses: int, seed: int = 0) -> dict[str, list[float]]:
    """Key press → repaint latency (ms), ``presses`` of each key kind, after a first visit of
    every screen. Keys: 'first visit', then '<kind> frame' / '<kind> callback' per kind."""
    from nanochat_tui.tui.screens.live import LivePane

    live = app.query_one(LivePane)
    clock = FrameClock(app, live)
    rng = random.Random(seed)
    out: dict[str, list[float]] = {"first visit": []}
    for _ in range(len(live.screens)):  # ends on the screen it started from
        frame, _callback = await _press_and_time(pilot, live, clock, "right_square_bracket")
        out["first visit"].append(frame)
        await asyncio.sleep(0.3)
    for kind, pair in KEYS.items():
        out[f"{kind} frame"], out[f"{kind} callback"] = [], []
        for i in range(presses):
            frame, callback = await _press_and_time(pilot, live, clock, pair[i % 2])
            out[f"{kind} frame"].append(frame)
            out[f"{kind} callback"].append(callback)
            await asyncio.sleep(rng.uniform(0.03, 0.09))
    return out


async def latency_synthetic(rate: float, presses: int) -> tuple[dict[str, list[float]], float]:
    from nanochat_tui.orchestrator.runner import attach
    from nanochat_tui.tui.app import NanochatApp
    from nanochat_tui.tui.messages import RunChanged
    from nanochat_tui.tui.screens.live import LivePane

    run_dir = Path(tempfile.mkdtemp()) / "stream"
    run_dir.mkdir()
    stop = threading.Event()
    writer = threading.Thread(
        target=stream_events, args=(run_dir / "events.jsonl", rate, stop), daemon=True
    )
    writer.start()
    app = NanochatApp(prefab="tiny")
    try:
        async with app.run_test(size=(160, 48)) as pilot:
            emulate_terminal(app)
            await pilot.press("5")
            await pilot.pause(0.3)
            app.post_message(RunChanged(attach(run_dir)))
            await pilot.pause(1.0)
            live = app.query_one(LivePane)
            n0, t0 = live.store.events_seen, time.perf_counter()
            lat = await measure(app, pilot, presses)
            seen_rate = (live.store.events_seen - n0) / (time.perf_counter() - t0)
    finally:
        stop.set()
        writer.join()
    return lat, seen_rate


def step_rate(run_dir: Path, skip: int) -> float:
    """Median tokens/s of the step events after ``skip`` warm-up steps."""
    from nanochat_tui.telemetry.jsonl import read_events

    steps = [e for e in read_events(run_dir / "events.jsonl") if e.get("type") == "step"][skip:]
    return statistics.median(e["tokens_per_s"] for e in steps)


def step_parts(run_dir: Path, skip: int = 20) -> str:
    """Median step / compute / host / data-wait times (ms): where a slowdown lands."""
    from nanochat_tui.telemetry.jsonl import read_events

    steps = [e for e in read_events(run_dir / "events.jsonl") if e.get("type") == "step"][skip:]
    keys = ("step_time", "compute_time", "host_time", "data_wait")
    return " ".join(f"{k.split('_')[0]} {1000 * statistics.median(e[k] for e in steps):.2f}"
                    for k in keys) + " ms"  # fmt: skip


def spread(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):8.0f}  min {min(values):8.0f}  max {max(values):8.0f}"
    )


def _steps_seen(run_dir: Path) -> int:
    from nanochat_tui.orchestrator.summaries import events_digest

    return events_digest(run_dir / "events.jsonl").step or 0


def headless(steps: int, name: str, mode: str = "thread") -> tuple[float, str]:
    """Tokens/s of a run with no UI; for a thread run also this process's per-thread CPU."""
    from nanochat_tui.config import load_config
    from nanochat_tui.orchestrator.runner import start_run

    config = load_config("tiny", [*TINY, f"train.num_iterations={steps}"])
    handle = start_run(config, name=name, mode=mode)
    while _steps_seen(handle.run_dir) < 20 and handle.is_alive():
        time.sleep(0.05)
    watch = CpuWatch()
    while handle.is_alive():
        time.sleep(0.2)
        watch.sample()
    if mode == "thread":
        handle.join()
    cpu = watch.report()
    return step_rate(handle.run_dir, skip=20), f"{step_parts(handle.run_dir)}  | {cpu}"


async def _wait_live(app: Any, pilot: Any, step: int = 20) -> Any:
    from nanochat_tui.tui.screens.live import LivePane

    live = None
    while live is None or live.store.step < step:
        await pilot.pause(0.1)
        live = app.query(LivePane).first() if app.query(LivePane) else None
    return live


async def attached(
    steps: int, presses: int, name: str, seed: int
) -> tuple[float, dict[str, list[float]], float, str]:
    """A run started from the TUI's Runs pane, watched on the Live pane while keys are pressed."""
    from nanochat_tui.tui.app import NanochatApp

    app = NanochatApp(prefab="tiny", overrides=[*TINY, f"train.num_iterations={steps}"])
    async with app.run_test(size=(160, 48)) as pilot:
        emulate_terminal(app)
        await pilot.press("4")
        await pilot.pause(0.2)
        await pilot.press("n")
        await pilot.pause(0.2)
        for ch in name:
            await pilot.press(ch)
        await pilot.press("enter")
        while app.state.run is None:
            await pilot.pause(0.1)
        run = app.state.run
        live = await _wait_live(app, pilot)
        n0, t0, watch = live.store.events_seen, time.perf_counter(), CpuWatch()
        lat: dict[str, list[float]] = {}
        if run.is_alive() and presses:
            lat = await measure(app, pilot, presses, seed)
            run.stop()  # the latency run is long enough to stream through every press
        while run.is_alive():
            await pilot.pause(0.2)
            watch.sample()
        wall = time.perf_counter() - t0
        seen_rate = (live.store.events_seen - n0) / wall
        cpu = watch.report()
    return step_rate(run.run_dir, skip=20), lat, seen_rate, f"{step_parts(run.run_dir)}  | {cpu}"


async def watch_detached(steps: int, name: str) -> tuple[float, str]:
    """A detached run (own process) watched by the TUI in this process: the operator's setup.
    Returns the run's tokens/s and the TUI process's CPU while it watched."""
    from nanochat_tui.config import load_config
    from nanochat_tui.orchestrator.runner import start_run
    from nanochat_tui.tui.app import NanochatApp

    config = load_config("tiny", [*TINY, f"train.num_iterations={steps}"])
    handle = start_run(config, name=name, mode="detached")
    app = NanochatApp(prefab="tiny", attach=handle.run_dir)
    async with app.run_test(size=(160, 48)) as pilot:
        emulate_terminal(app)
        await _wait_live(app, pilot)
        watch = CpuWatch()
        while handle.is_alive():
            await pilot.pause(0.2)
            watch.sample()
        cpu = watch.report()
    return step_rate(handle.run_dir, skip=20), f"{step_parts(handle.run_dir)}  | TUI {cpu}"


def compare(label: str, head: list[float], att: list[float]) -> None:
    h, a = statistics.median(head), statistics.median(att)
    pairs = [100 * (1 - y / x) for x, y in zip(head, att, strict=True)]
    print(f"   {label} headless {spread(head)}")
    print(f"   {label} attached {spread(att)}")
    print(
        f"   {label} slowdown of medians {100 * (1 - a / h):+.1f} %   per pair: median"
        f" {statistics.median(pairs):+.1f} %  range {min(pairs):+.1f} .. {max(pairs):+.1f} %"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rate", type=float, default=200.0, help="synthetic events per second")
    ap.add_argument("--presses", type=int, default=40, help="presses per key kind and scenario")
    ap.add_argument("--steps", type=int, default=300, help="training steps per run")
    ap.add_argument("--repeats", type=int, default=3, help="headless/attached run pairs")
    ap.add_argument("--detached-repeats", type=int, default=3, help="detached alone/watched pairs")
    ap.add_argument("--skip-training", action="store_true", help="only the synthetic scenario")
    ap.add_argument("--skip-latency", action="store_true", help="skip the latency scenarios")
    ap.add_argument(
        "--skip-throughput", action="store_true", help="skip the tokens/s scenarios (3 and 4)"
    )

    args = ap.parse_args()

    if not args.skip_latency:
        print(f"\n== 1. synthetic stream at {args.rate:.0f} events/s   [{load()}]")
        lat, seen = asyncio.run(latency_synthetic(args.rate, args.presses))
        print(f"   ingested {seen:.0f} events/s")
        for kind, values in lat.items():
            print(summary(kind, values))
        print(f"   [{load()}]")
    if args.skip_training:
        return

    headless(60, "warmup")  # tokenizer + data caches, JIT warm in this process
    if not args.skip_latency:
        print(
            f"\n== 2. latency during a real tiny training run (from step 20 on; stopped after the"
            f" last press)   [{load()}]"
        )
        _tok, t_lat, seen, _cpu = asyncio.run(attached(100_000, args.presses, "latency", 0))
        print(f"   ingested {seen:.0f} events/s (as fast as this machine trains)")
        for kind, values in t_lat.items():
            if values:
                print(summary(kind, values))
        print(f"   [{load()}]")
    if args.skip_throughput:
        return

    head: list[float] = []
    att: list[float] = []
    print(
        f"\n== 3. tokens/s, {args.steps} steps, thread run: headless vs TUI attached in the same"
        f" process (watching, no keys), {args.repeats}× interleaved"
    )
    for rep in range(args.repeats):
        tok, info = headless(args.steps, f"headless{rep}")
        head.append(tok)
        print(f"   headless {tok:8.0f} tok/s   {info}")
        tok, _lat, seen, info = asyncio.run(attached(args.steps, 0, f"attached{rep}", rep))
        att.append(tok)
        print(f"   attached {tok:8.0f} tok/s   {info}   events {seen:.0f}/s   [{load()}]")
    compare("thread  ", head, att)

    if args.detached_repeats:
        dhead: list[float] = []
        datt: list[float] = []
        print(
            f"\n== 4. tokens/s, {args.steps} steps, detached run: alone vs watched by a TUI"
            f" process, {args.detached_repeats}× interleaved"
        )
        for rep in range(args.detached_repeats):
            tok, _info = headless(args.steps, f"dheadless{rep}", mode="detached")
            dhead.append(tok)
            print(f"   alone    {tok:8.0f} tok/s   [{load()}]")
            tok, info = asyncio.run(watch_detached(args.steps, f"dwatched{rep}"))
            datt.append(tok)
            print(f"   watched  {tok:8.0f} tok/s   {info}   [{load()}]")
        compare("detached", dhead, datt)
    print(f"\n   targets: p99 ≤ 50 ms, slowdown ≤ 2 %   [{load()}]")


if __name__ == "__main__":
    main()
