"""The managed job's run script (orchestrator/launch.py ``run_script``), executed here with bash on a
local folder standing in for the checkpoint bucket, with the real ``uv run nanochat-tui run`` on
the smallest config: a job restarted before its first checkpoint (the run dir has config.yaml and
events but no checkpoint) starts the run over in the same directory, and one restarted after a
checkpoint resumes from it. Before, the script resumed whenever config.yaml existed and
``run --resume`` refused the checkpoint-less run, so every restart failed."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from helpers import tiny_overrides
from launch_fixtures import require_sky
from nanochat_tui import rundir
from nanochat_tui.config import load_config
from nanochat_tui.config.loader import to_yaml
from nanochat_tui.orchestrator import launch
from nanochat_tui.telemetry.jsonl import read_events

require_sky()

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def job(script: str, rank: str = "0") -> subprocess.CompletedProcess:
    """One start of the managed job on this node: the script, as SkyPilot runs it (bash)."""
    env = {**os.environ, "SKYPILOT_NODE_RANK": rank}
    return subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_restart_before_a_checkpoint_starts_over_and_after_one_resumes(tmp_path) -> None:
    bucket = tmp_path / "bucket"
    config = load_config("tiny", tiny_overrides({"train.num_iterations": 2}))
    config_file = tmp_path / "config.yaml"
    config_file.write_text(to_yaml(config))
    spec = launch.LaunchSpec(prefab="tiny", cloud="aws", accelerator="H100:1", name="spot")
    script = launch.run_script(spec, checkpoints=str(bucket), config=str(config_file))
    assert script.replace(str(bucket), launch.CHECKPOINTS).replace(
        str(config_file), launch.REMOTE_CONFIG
    ) == launch.run_script(spec)  # the same script as the Task's, on a local folder

    # what a job preempted before its first checkpoint leaves in the bucket
    run_dir = bucket / "runs" / "spot"
    run_dir.mkdir(parents=True)
    (run_dir / rundir.CONFIG).write_text(to_yaml(config))
    start = {"type": "run_start", "run_name": "spot", "resumed_from_step": None}
    (run_dir / rundir.EVENTS).write_text(json.dumps(start) + "\n")
    assert rundir.latest_checkpoint(run_dir) is None

    first = job(script)
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"run spot: {run_dir}" in first.stdout  # a new run, in the same directory
    events = read_events(run_dir / rundir.EVENTS)
    assert [e["type"] for e in events].count("run_start") == 1  # the stale attempt is gone
    assert events[-1]["type"] == "run_end" and events[-1]["status"] == "finished"
    saved = rundir.latest_checkpoint(run_dir)
    assert saved is not None and saved.step == 2

    again = job(script)  # restarted again (say, preempted while the job was ending)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"resuming spot: {run_dir}" in again.stdout
    starts = [e for e in read_events(run_dir / rundir.EVENTS) if e["type"] == "run_start"]
    assert [s.get("resumed_from_step") for s in starts] == [None, 2]


def test_only_node_zero_clears_the_run_dir_and_an_unclear_check_stops_the_job(tmp_path) -> None:
    """Nodes other than 0 leave the directory to node 0 (the training command is replaced by
    ``true`` here); a check that fails (here: a ``uv`` that cannot sync) ends the job before
    anything is removed."""
    spec = launch.LaunchSpec(prefab="tiny", cloud="aws", accelerator="H100:1", name="spot")
    run_dir = tmp_path / "runs" / "spot"
    run_dir.mkdir(parents=True)
    (run_dir / rundir.EVENTS).write_text("{}\n")
    script = launch.run_script(spec, checkpoints=str(tmp_path), config="/nonexistent.yaml")
    other = job(script.replace("uv run nanochat-tui run", "true"), rank="1")
    assert other.returncode == 0, other.stderr
    assert (run_dir / rundir.EVENTS).exists()

    broken = tmp_path / "bin"
    broken.mkdir()
    (broken / "uv").write_text("#!/bin/sh\necho 'uv: cannot sync' >&2\nexit 2\n")
    (broken / "uv").chmod(0o755)
    unclear = subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT,
        env={**os.environ, "SKYPILOT_NODE_RANK": "0", "PATH": f"{broken}:{os.environ['PATH']}"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unclear.returncode != 0 and "uv: cannot sync" in unclear.stderr
    assert (run_dir / rundir.EVENTS).exists()
