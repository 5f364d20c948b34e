"""UI latency and TUI overhead benchmark.

1. Key-press-to-repaint latency (p50/p99) of the Live pane while events stream at ``--rate``/s
   (a writer thread appends step events to events.jsonl, as a fast run would), driving the real
   app headless with ``App.run_test`` + Pilot: from the press of ``]``/``[`` (switch live screen,
   the heaviest repaint: panels are remounted and redrawn) to the next completed refresh of the pane.
2. The same latency during a real tiny training run started from the TUI, plus training tokens/s
   with the TUI attached vs. headless (same tiny config, same number of steps).

    uv run python benchmarks/ui_latency.py [--rate 200] [--presses 60] [--steps 400]

Targets: p99 ≤ 50 ms; ≤ 2 % training slowdown.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("NANOCHAT_TUI_HOME", tempfile.mkdtemp(prefix="nanochat-bench-"))
os.environ.setdefault("WANDB_MODE", "offline")

TINY = [
    "model.depth=1", "model.aspect_ratio=64", "model.head_dim=32", "model.sequence_len=64",
    "model.vocab_size=512", "data.max_chars=200000", "data.tokenizer_chars=50000",
    "train.device_batch_size=4", "train.total_batch_size=256", "train.eval_every=0",
    "train.sample_every=0", "train.save_every=0", "train.eval_tokens=2048",
]  # fmt: skip


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(q / 100 * (len(values) - 1)))]


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


async def measure_presses(app, pilot, presses: int) -> list[float]:
    """Latency (ms) from each key press to the Live pane's next completed refresh."""
    from nanochat_tui.tui.screens.live import LivePane

    live = app.query_one(LivePane)
    out = []
    for i in range(presses):
        key = "right_square_bracket" if i % 2 == 0 else "left_square_bracket"
        before = live.paint_count
        t0 = time.perf_counter()
        await pilot.press(key)
        deadline = t0 + 2.0
        while live.paint_count == before and time.perf_counter() < deadline:
            await asyncio.sleep(0.0005)
        out.append((live.last_paint - t0) * 1000 if live.paint_count > before else 2000.0)
        await asyncio.sleep(0.02)
    return out


async def latency_streaming(rate: float, presses: int) -> tuple[list[float], float]:
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
            await pilot.press("5")
            await pilot.pause(0.3)
            app.post_message(RunChanged(attach(run_dir)))
            await pilot.pause(1.0)
            live = app.query_one(LivePane)
            n0, t0 = live.store.events_seen, time.perf_counter()
            lat = await measure_presses(app, pilot, presses)
            seen_rate = (live.store.events_seen - n0) / (time.perf_counter() - t0)
    finally:
        stop.set()
        writer.join()
    return lat, seen_rate


def step_rate(run_dir: Path, skip: int) -> tuple[float, float]:
    """Median tokens/s of step events after ``skip`` warm-up steps, and wall seconds of those steps."""
    from nanochat_tui.telemetry.jsonl import read_events

    steps = [e for e in read_events(run_dir / "events.jsonl") if e.get("type") == "step"][skip:]
    return statistics.median(e["tokens_per_s"] for e in steps), steps[-1]["time"] - steps[0]["time"]


def headless(steps: int, name: str) -> tuple[float, float]:
    from nanochat_tui.config import load_config
    from nanochat_tui.orchestrator.runner import start_run

    handle = start_run(load_config("tiny", [*TINY, f"train.num_iterations={steps}"]), name=name)
    handle.join()
    return step_rate(handle.run_dir, skip=20)


async def attached(steps: int, presses: int, name: str) -> tuple[float, float, list[float], float]:
    from nanochat_tui.tui.app import NanochatApp
    from nanochat_tui.tui.screens.live import LivePane

    app = NanochatApp(prefab="tiny", overrides=[*TINY, f"train.num_iterations={steps}"])
    async with app.run_test(size=(160, 48)) as pilot:
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
        live = None
        while live is None or live.store.step < 20:
            await pilot.pause(0.1)
            live = app.query(LivePane).first() if app.query(LivePane) else None
        n0, t0 = live.store.events_seen, time.perf_counter()
        lat = await measure_presses(app, pilot, presses)
        seen_rate = (live.store.events_seen - n0) / (time.perf_counter() - t0)
        while run.is_alive():
            await pilot.pause(0.2)
    tok_s, wall = step_rate(run.run_dir, skip=20)
    return tok_s, wall, lat, seen_rate


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--rate", type=float, default=200.0, help="streamed events per second")
    ap.add_argument("--presses", type=int, default=60)
    ap.add_argument("--steps", type=int, default=400, help="training steps per run")
    args = ap.parse_args()

    lat, seen = asyncio.run(latency_streaming(args.rate, args.presses))
    print(
        f"\n== Live pane key→repaint latency, events streaming at {args.rate:.0f}/s (ingested {seen:.0f}/s)"
    )
    print(
        f"   p50 {pct(lat, 50):6.1f} ms   p99 {pct(lat, 99):6.1f} ms   max {max(lat):6.1f} ms   n={len(lat)}"
    )

    headless(60, "warmup")  # tokenizer + data caches, JIT warm in this process
    h_tok, h_wall = headless(args.steps, "headless")
    a_tok, a_wall, a_lat, a_seen = asyncio.run(attached(args.steps, args.presses, "attached"))
    h2_tok, h2_wall = headless(args.steps, "headless2")
    base = (h_tok + h2_tok) / 2
    print(
        f"\n== Training tokens/s, tiny config, {args.steps} steps (median of steps after 20 warm-up)"
    )
    print(
        f"   headless  {h_tok:10.0f} tok/s  ({h_wall:.1f} s)   headless again {h2_tok:10.0f} tok/s ({h2_wall:.1f} s)"
    )
    print(
        f"   TUI attached {a_tok:7.0f} tok/s  ({a_wall:.1f} s)   slowdown {100 * (1 - a_tok / base):+.1f} %"
    )
    print(
        f"   latency during training (events {a_seen:.0f}/s): p50 {pct(a_lat, 50):.1f} ms  p99 {pct(a_lat, 99):.1f} ms"
    )
    print("\n   targets: p99 ≤ 50 ms, slowdown ≤ 2 %")


if __name__ == "__main__":
    main()
