"""A detached run survives its launcher, can be re-attached and steered over its 0600 socket.

Real training on a tiny config (depth 1, width 64, seq 64, vocab 512). The launcher is a separate
``python -c`` process that is SIGKILLed once the run is up, like a TUI whose SSH session dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import tiny
from helpers import wait_for_event as wait_for
from nanochat_tui import allocator, rundir
from nanochat_tui.config import Config, ConfigError, apply_overrides, to_yaml
from nanochat_tui.errors import UserError
from nanochat_tui.orchestrator.runner import DetachedRun, attach, read_record
from nanochat_tui.orchestrator.summaries import list_runs
from nanochat_tui.telemetry.jsonl import JsonlTailer, read_events

# num_iterations: long enough to still be running; the tests stop it
TINY = tiny({"train.num_iterations": 100_000, "train.eval_tokens": 512})

LAUNCHER = """
import sys, time
from nanochat_tui.config import load_prefab
from nanochat_tui.orchestrator.runner import start_run
handle = start_run(load_prefab(sys.argv[1]), name="bg", mode="detached")
print(handle.pid, flush=True)
time.sleep(600)
"""


def steps(path: Path) -> list[int]:
    return [e["step"] for e in read_events(path) if e["type"] == "step"]


@pytest.fixture
def launched(tmp_path):
    """Start a detached run from a separate launcher process, then SIGKILL the launcher."""
    runs = tmp_path / "runs"
    config = apply_overrides(Config(), {**TINY, "run.runs_dir": str(runs)})
    prefab = tmp_path / "bg.yaml"
    prefab.write_text(to_yaml(config))
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(prefab)], stdout=subprocess.PIPE, text=True
    )
    child_pid = None
    try:
        child_pid = int(launcher.stdout.readline())
        yield runs / "bg", child_pid, launcher
    finally:
        launcher.kill()
        launcher.wait()
        if child_pid:  # never leave a training process behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child_pid, signal.SIGKILL)


def test_detached_run_survives_launcher_attach_and_control(launched):
    run_dir, child_pid, launcher = launched
    events = run_dir / "events.jsonl"

    # "The TUI exits": its process is SIGKILLed; the run is in its own session and keeps going.
    launcher.send_signal(signal.SIGKILL)
    launcher.wait(10)
    assert os.getsid(child_pid) == child_pid  # own session, no controlling terminal
    wait_for(events, lambda e: e["type"] == "step" and e["step"] >= 2)
    before = len(steps(events))
    time.sleep(1.0)
    assert len(steps(events)) > before, "events stopped growing after the launcher died"

    record = read_record(run_dir)
    assert record["mode"] == "detached" and record["pid"] == child_pid and record["host"]

    # Re-attach from this (different) process and read the full history while it keeps going.
    handle = attach(run_dir)
    assert isinstance(handle, DetachedRun) and handle.is_alive() and handle.status() == "running"
    tailer = JsonlTailer(handle.events_path)
    history = tailer.read_new()
    assert history[0]["type"] in ("heartbeat", "log", "run_start", "phase")
    start = next(e for e in history if e["type"] == "run_start")
    if allocator.library() is not None:  # detached runs start on mimalloc (allocator.py)
        assert start["allocator"] == "mimalloc"
    seen = [e["step"] for e in history if e["type"] == "step"]
    assert seen == list(range(1, len(seen) + 1))
    time.sleep(0.5)
    assert any(e["type"] == "step" for e in tailer.read_new())  # only the new lines

    # Owner-only control socket.
    sock = handle.socket_path()
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600

    summary = {s.run_dir: s for s in list_runs(run_dir.parent)}[run_dir]
    assert summary.status == "running" and summary.mode == "detached"

    # Patch: validated client-side (bad key → ConfigError, nothing sent), then applied by the engine.
    with pytest.raises(ConfigError):
        handle.patch({"model.depth": 4})
    with pytest.raises(ConfigError):
        handle.patch({"optim.lr_multiplier": -1})
    handle.patch({"optim.lr_multiplier": "0.5"})
    patch = wait_for(events, lambda e: e["type"] == "patch")
    assert patch["ok"] is True and patch["changes"] == {"optim.lr_multiplier": 0.5}
    wait_for(
        events,
        lambda e: e["type"] == "step" and e["step"] > patch["step"] and e["lr_multiplier"] == 0.5,
    )

    # Checkpoint now.
    handle.checkpoint_now()
    ckpt = wait_for(events, lambda e: e["type"] == "checkpoint" and e["reason"] == "manual")
    assert Path(ckpt["path"]).is_dir()
    assert [c.step for c in rundir.list_checkpoints(run_dir)] == [ckpt["step"]]

    # Stop: checkpoint, run_end "stopped", process exits, socket removed.
    handle.stop()
    end = wait_for(events, lambda e: e["type"] == "run_end", timeout=60)
    assert end["status"] == "stopped"
    assert handle.wait(30)
    assert not sock.exists()
    summary = {s.run_dir: s for s in list_runs(run_dir.parent)}[run_dir]
    assert summary.status == "stopped" and summary.step == end["step"]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "stopped"
    with pytest.raises(UserError, match="not running"):
        attach(run_dir).checkpoint_now()
