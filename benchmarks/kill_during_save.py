"""SIGKILL a training run while it saves a checkpoint, then check nothing was lost.

Each trial starts `nanochat-tui run` (the public CLI) on a tiny config that saves every 2 steps,
watches the checkpoints folder and sends SIGKILL while a save is in flight (an orbax temp
directory exists), at a seeded save and delay. Then:
  * every checkpoint the run lists (``rundir.list_checkpoints``) must load;
  * ``run --resume`` must finish the run;
  * the loss of every step, before the kill and after the resume, must equal an uninterrupted
    run's bit for bit.

    uv run python benchmarks/kill_during_save.py --trials 12 --seed 0

The test suite runs two trials of the same code (tests/test_kill_during_save.py).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STEPS = 12
SETS = [
    "model.depth=1",
    "model.aspect_ratio=64",
    "model.head_dim=32",
    "model.sequence_len=64",
    "model.vocab_size=512",
    "data.max_chars=200000",
    "data.tokenizer_chars=50000",
    "train.device_batch_size=4",
    "train.total_batch_size=256",
    f"train.num_iterations={STEPS}",
    "train.eval_every=0",
    "train.eval_tokens=2048",
    "train.sample_every=0",
    "train.save_every=2",
    "train.keep_checkpoints=3",
]


@dataclass
class Trial:
    seed: int
    killed_during_save: bool  # SIGKILL landed while an orbax temp dir existed
    killed_at_step: int | None  # last step event written before the kill
    listed: list[int]  # checkpoints listed after the kill
    resumed_from: int | None
    exact: bool  # every step's loss equals the uninterrupted run's
    seconds: float


def cli(home: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "nanochat_tui.cli", "run", "tiny", *args]


def env_for(home: Path) -> dict[str, str]:
    return {**os.environ, "NANOCHAT_TUI_HOME": str(home), "WANDB_MODE": "offline"}


def run_dir_of(home: Path, name: str) -> Path:
    return home / "data" / "runs" / name


def set_args() -> list[str]:
    return [a for s in SETS for a in ("--set", s)]


def step_losses(run_dir: Path) -> list[dict[int, float]]:
    """Per process (split at each run_start): step -> loss, as written to events.jsonl."""
    from nanochat_tui.telemetry.jsonl import read_events

    segments: list[dict[int, float]] = []
    for event in read_events(run_dir / "events.jsonl"):
        if event.get("type") == "run_start":
            segments.append({})
        elif event.get("type") == "step" and segments:
            segments[-1][int(event["step"])] = event["loss"]
    return segments


def reference(home: Path, timeout: float = 600) -> dict[int, float]:
    """Losses of an uninterrupted run of the same config."""
    done = subprocess.run(
        [*cli(home, *set_args(), "--name", "reference", "--quiet")],
        env=env_for(home),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        raise RuntimeError(f"reference run failed: {done.stderr[-2000:]}")
    (losses,) = step_losses(run_dir_of(home, "reference"))
    return losses


def _saving(ckpt_root: Path) -> bool:
    try:
        return any("tmp" in entry.name for entry in os.scandir(ckpt_root))
    except OSError:
        return False


def trial(home: Path, seed: int, ref: Any, timeout: float = 600) -> Trial:
    """One kill-during-save trial; raises AssertionError when something was lost. ``ref`` is the
    uninterrupted run's losses, or a Future of them (trials may run beside the reference)."""
    from nanochat_tui import rundir
    from nanochat_tui.jax_engine.inference import ChatModel

    rng = random.Random(seed)
    target_save = rng.randint(1, 4)  # which save to interrupt
    delay_s = rng.uniform(0.0, 0.02)  # how far into it
    name = f"victim-{seed}"
    run_dir = run_dir_of(home, name)
    started = time.monotonic()
    proc = subprocess.Popen(
        cli(home, *set_args(), "--name", name, "--quiet"),
        env=env_for(home),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ckpt_root = run_dir / rundir.CHECKPOINTS
    saves_seen, in_save, killed_during_save = 0, False, False
    while proc.poll() is None and time.monotonic() - started < timeout:
        saving = _saving(ckpt_root)
        if saving and not in_save:
            saves_seen += 1
            if saves_seen == target_save:
                time.sleep(delay_s)
                killed_during_save = _saving(ckpt_root)
                proc.send_signal(signal.SIGKILL)
                break
        in_save = saving
        time.sleep(0.001)
    proc.wait(timeout=60)
    before = step_losses(run_dir)
    killed_at = max(before[0]) if before and before[0] else None

    listed = rundir.list_checkpoints(run_dir)
    for info in listed:  # every listed checkpoint loads (raises if it is broken)
        ChatModel.load(info.path)

    resumed_from = listed[-1].step if listed else None
    if proc.returncode != 0 and listed:
        done = subprocess.run(
            [*cli(home, "--resume", str(run_dir), "--quiet")],
            env=env_for(home),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, f"resume failed: {done.stderr[-2000:]}"
        assert f"finished at step {STEPS}" in done.stdout, done.stdout

    if isinstance(ref, Future):
        ref = ref.result()
    segments = step_losses(run_dir)
    seen: dict[int, float] = {}
    exact = True
    for segment in segments:
        for step, loss in segment.items():
            exact &= loss == ref[step]
            seen[step] = loss
    if listed or proc.returncode == 0:
        assert set(seen) == set(ref), f"steps missing after resume: {set(ref) - set(seen)}"
    assert exact, f"seed {seed}: a loss differs from the uninterrupted run"
    return Trial(
        seed,
        killed_during_save,
        killed_at,
        [c.step for c in listed],
        resumed_from,
        exact,
        time.monotonic() - started,
    )


def run_trials(home: Path, seeds: list[int], jobs: int) -> list[Trial | AssertionError]:
    """The reference run and the trials, ``jobs`` processes at a time (kill timing does not
    depend on speed: a trial kills when it sees a save in flight)."""
    with ThreadPoolExecutor(max_workers=jobs + 1) as pool:
        ref = pool.submit(reference, home)
        futures = [pool.submit(trial, home, seed, ref) for seed in seeds]
        out: list[Trial | AssertionError] = []
        for future in futures:
            try:
                out.append(future.result())
            except AssertionError as err:
                out.append(err)
        return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=2, help="trials run side by side")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kill-during-save-") as tmp:
        home = Path(tmp)
        seeds = [args.seed + i for i in range(args.trials)]
        print(
            f"{'seed':>4} {'in save':>7} {'killed@':>7} {'listed':>12} {'resume@':>7} exact  secs"
        )
        results: list[Trial | None] = []
        for seed, t in zip(seeds, run_trials(home, seeds, args.jobs), strict=True):
            if isinstance(t, AssertionError):
                print(f"{seed:>4} FAILED: {t}")
                results.append(None)
                continue
            results.append(t)
            print(
                f"{t.seed:>4} {t.killed_during_save!s:>7} {t.killed_at_step!s:>7} "
                f"{','.join(map(str, t.listed)) or '-':>12} {t.resumed_from!s:>7} "
                f"{t.exact!s:>5} {t.seconds:5.1f}"
            )
        ok = [t for t in results if t is not None]
        print(
            f"{len(ok)}/{len(results)} trials intact; "
            f"{sum(t.killed_during_save for t in ok)} killed while a save was in flight"
        )
        return 0 if len(ok) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
