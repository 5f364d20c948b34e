"""Two processes on 127.0.0.1 with ``jax.distributed`` (CPU, gloo collectives, 2 devices each)
train a few steps of one run on a 2×2 mesh — parameters sharded across the two processes, each
process reading only the rows of each batch its own devices hold — and process 0's loss sequence
equals a single-process run of the same global batch. Two detached processes are steered with
``nanochat-tui control`` through process 0 and stop at the same step; a killed process (0 or 1)
ends the other with one line naming it, no C++ stack, its checkpoints loadable. Plus the
coordinator/rank resolution from flags, ``NANOCHAT_*`` and SkyPilot's variables (no JAX), and how
the supervisor reads JAX's runtime report."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import pytest

from helpers import tiny_overrides, wait_for_event
from nanochat_tui import paths, rundir
from nanochat_tui.commands.train_cmd import COORDINATOR_PORT, cluster_from
from nanochat_tui.errors import UserError
from nanochat_tui.jax_engine.data import BatchLoader
from nanochat_tui.orchestrator import multihost

WORKER = Path(__file__).parent / "sharding_worker.py"
SHARDED = {"train.device_batch_size": 1, "train.total_batch_size": 512, "optim.warmdown_ratio": 0.0}
RTOL = 1e-5  # fp32, another reduction order (see test_sharding.py)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int) -> dict[str, str]:
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": str(devices), "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    env["NANOCHAT_PEER_TIMEOUT_S"] = str(PEER_TIMEOUT_S)
    return env


PEER_TIMEOUT_S = 15  # a lost process is declared after this (the default 30 s halves the wait)


def _process_cmd(name: str, port: int, rank: int, overrides: list[str]) -> list[str]:
    """``nanochat-tui run tiny`` as process ``rank`` of 2 of run ``name``."""
    cmd = [sys.executable, "-m", "nanochat_tui.cli", "run", "tiny", "--quiet", "--name", name]
    for item in overrides:
        cmd += ["--set", item]
    cmd += ["--coordinator", f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(rank)]  # fmt: skip
    return cmd


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and everything under it (a supervisor's child has its own process group)."""
    with contextlib.suppress(psutil.NoSuchProcess):
        proc = psutil.Process(pid)
        for p in [*proc.children(recursive=True), proc]:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nanochat_tui.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.timeout(1800)  # six (three) tiny runs in subprocesses: slow on a loaded machine
def test_two_processes_match_one(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    port = _free_port()
    overrides = tiny_overrides(
        {
            **SHARDED,
            "train.num_iterations": 3,
            "mesh.data": 2,
            "mesh.fsdp": 2,
            "run.runs_dir": str(runs),
        }
    )
    procs = [
        subprocess.Popen(
            _process_cmd("mh", port, i, overrides),
            env=_env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, (out, err[-3000:])
    events = [json.loads(line) for line in (runs / "mh" / "events.jsonl").read_text().splitlines()]
    start = next(e for e in events if e["type"] == "run_start")
    assert start["processes"] == 2 and start["devices_used"] == 4 and start["grad_accum_steps"] == 2
    losses = [e["loss"] for e in events if e["type"] == "step"]
    assert (runs / "mh" / "checkpoints" / "3").is_dir()  # saved by both processes' orbax
    # 8 rows a step = 2 micro-batches × 4 columns; process 0's devices hold columns 0-1, process
    # 1's columns 2-3: each read its 4 rows of every batch it built, never the other's
    reads = sorted(data_reads(paths.log_dir() / "app.log"))
    assert [rows for rows, _read, _batches in reads] == [[0, 1, 4, 5], [2, 3, 6, 7]], reads
    for _rows, read, batches in reads:
        assert batches >= 3 and read == 4 * batches, reads
    ref = subprocess.run(
        [
            sys.executable,
            str(WORKER),
            json.dumps(
                {
                    "root": str(tmp_path / "ref"),
                    "runs": [{"name": "one", "mesh": [1, 1], "steps": 3}],
                }
            ),
        ],
        env=_env(1),
        capture_output=True,
        text=True,
        timeout=900,
    )
    line = [ln for ln in ref.stdout.splitlines() if ln.startswith("RESULT ")]
    assert ref.returncode == 0 and line, ref.stderr[-3000:]
    want = json.loads(line[-1][len("RESULT ") :])["one"]["losses"]
    assert len(losses) == 3
    assert all(abs(a - b) <= RTOL * abs(b) for a, b in zip(losses, want, strict=True)), (
        losses,
        want,
    )


STEERED = {**SHARDED, "train.num_iterations": 100_000, "mesh.data": 2, "mesh.fsdp": 2}


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_detached_processes_are_steered_through_process_0(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run_dir = runs / "steer"
    overrides = tiny_overrides({**STEERED, "run.runs_dir": str(runs)})
    port = _free_port()
    pids = []
    try:
        for rank in range(2):
            out = subprocess.run(
                [*_process_cmd("steer", port, rank, overrides), "--detach"],
                env=_env(2),
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert out.returncode == 0, out.stderr
            assert f"detached process {rank} of 2 of run steer" in out.stdout, out.stdout
            pids.append(int(re.search(r"\(pid (\d+)\)", out.stdout).group(1)))
        assert "control: nanochat-tui control" in out.stdout or rank == 1
        events = run_dir / rundir.EVENTS
        wait_for_event(events, lambda e: e["type"] == "step" and e["step"] >= 2, 600)

        status = _cli("control", str(run_dir), "status")
        assert status.returncode == 0 and "[multi-process]" in status.stdout, status
        patched = _cli("control", str(run_dir), "patch", "optim.lr_multiplier=0.5")
        assert patched.returncode == 0, patched.stderr
        patch = wait_for_event(events, lambda e: e["type"] == "patch", 120)
        assert patch["ok"] and patch["changes"] == {"optim.lr_multiplier": 0.5}
        assert _cli("control", str(run_dir), "checkpoint").returncode == 0
        manual = wait_for_event(
            events, lambda e: e["type"] == "checkpoint" and e["reason"] == "manual", 120
        )
        assert _cli("control", str(run_dir), "stop").returncode == 0
        end = wait_for_event(events, lambda e: e["type"] == "run_end", 120)
        assert end["status"] == "stopped" and end["step"] > manual["step"] >= patch["step"]
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                psutil.Process(pid).wait(120)
        # process 1 took the same commands at the same steps: it stopped where process 0 did
        log1 = multihost.log_path("steer", 1).read_text()
        assert f"process 1 of 2: stopped at step {end['step']}" in log1, log1[-2000:]
        assert [c.step for c in rundir.list_checkpoints(run_dir)][-2:] == [
            manual["step"],
            end["step"],
        ]
    finally:
        for pid in pids:
            _kill_tree(pid)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("lost", [1, 0])
def test_a_lost_process_ends_the_other_with_one_line_naming_it(tmp_path: Path, lost: int) -> None:
    runs = tmp_path / "runs"
    run_dir = runs / "lost"
    overrides = tiny_overrides({**STEERED, "train.save_every": 2, "run.runs_dir": str(runs)})
    port = _free_port()
    procs = [
        subprocess.Popen(
            _process_cmd("lost", port, rank, overrides),
            env=_env(2),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for rank in range(2)
    ]
    try:
        saved = wait_for_event(run_dir / rundir.EVENTS, lambda e: e["type"] == "checkpoint", 600)
        process = psutil.Process(procs[lost].pid)
        (trainer,) = process.children() or [process]  # the supervised training process
        trainer.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        survivor = procs[1 - lost]
        out, err = survivor.communicate(timeout=PEER_TIMEOUT_S + 120)
        took = time.monotonic() - killed_at
        _, lost_err = procs[lost].communicate(timeout=60)
    finally:
        for p in procs:
            _kill_tree(p.pid)
    assert survivor.returncode == 1, (out, err)
    for text in (err, lost_err):
        assert "Check failure" not in text and "@     0x" not in text and "Traceback" not in text
        assert ".cc:" not in text and "client.h" not in text, text
    lines = err.strip().splitlines()
    named = (
        f"error: lost process 0 of 2, the coordinator at 127.0.0.1:{port} (it stopped answering)"
        if lost == 0
        else f"error: lost process 1 of 2 (no heartbeat for {PEER_TIMEOUT_S} s)"
    )
    assert lines[-2] == f"{named}; process {1 - lost} stopped too", err
    latest = rundir.latest_checkpoint(run_dir)
    assert latest is not None and latest.step >= saved["step"]
    assert lines[-1] == (
        f"  → the last checkpoint is {latest.path}; once every host is up, start each process "
        f"again with --resume {run_dir}"
    )
    assert took < PEER_TIMEOUT_S + 60, took
    assert procs[lost].returncode == 128 + signal.SIGKILL
    assert lost_err.strip().splitlines()[-1] == f"error: process {lost} of 2 was ended by SIGKILL"
    report = paths.log_dir() / "app.log"
    assert "JAX's distributed runtime ended it" in report.read_text()
    if lost == 1:  # the checkpoint both processes wrote is whole: it loads in one process
        from nanochat_tui.jax_engine.inference import ChatModel

        assert ChatModel.load(latest.path).step == latest.step


def data_reads(app_log: Path) -> list[tuple[list[int], int, int]]:
    """(rows, rows read, batches) from each process's 'data: read' line in the app log."""
    import re

    found = []
    for line in app_log.read_text().splitlines():
        message = json.loads(line)["message"]
        m = re.fullmatch(r"data: read (\d+) rows in (\d+) batches \(rows (\[[\d, ]*\]) of each 8-row batch\)", message)  # fmt: skip
        if m:
            found.append((json.loads(m.group(3)), int(m.group(1)), int(m.group(2))))
    return found


def test_a_loader_with_rows_reads_only_them_in_the_same_order() -> None:
    tokens = np.arange(10 * 4 + 1, dtype=np.uint16)  # 10 windows of 4 tokens
    whole = BatchLoader(tokens, 4, 6, seed=3, prefetch=0)
    part = BatchLoader(tokens, 4, 6, seed=3, prefetch=0, rows=np.array([1, 4]))
    for _ in range(3):  # crosses an epoch: 18 rows of 10 windows
        x, y = whole.next()
        px, py = part.next()
        np.testing.assert_array_equal(px, x[[1, 4]])
        np.testing.assert_array_equal(py, y[[1, 4]])
        assert part.position == whole.position  # resume points agree with one process's
    assert (part.rows_read, whole.rows_read) == (6, 18)
    resumed = BatchLoader(tokens, 4, 6, seed=3, prefetch=0, rows=np.array([1, 4]), position=part.position)  # fmt: skip
    np.testing.assert_array_equal(resumed.next()[0], whole.next()[0][[1, 4]])


def _args(**kw) -> argparse.Namespace:
    return argparse.Namespace(
        **{"coordinator": None, "num_processes": None, "process_id": None, **kw}
    )


def test_cluster_from_flags_env_and_skypilot() -> None:
    assert cluster_from(_args(), {}) is None
    assert cluster_from(_args(coordinator="h:1", num_processes=2, process_id=1), {}) == (
        "h:1",
        2,
        1,
    )
    env = {
        "NANOCHAT_COORDINATOR": "10.0.0.1:99",
        "NANOCHAT_NUM_PROCESSES": "4",
        "NANOCHAT_PROCESS_ID": "3",
    }
    assert cluster_from(_args(), env) == ("10.0.0.1:99", 4, 3)
    sky = {
        "SKYPILOT_NODE_IPS": "10.0.0.5\n10.0.0.6\n",
        "SKYPILOT_NUM_NODES": "2",
        "SKYPILOT_NODE_RANK": "1",
    }
    assert cluster_from(_args(), sky) == (f"10.0.0.5:{COORDINATOR_PORT}", 2, 1)
    single = {"SKYPILOT_NODE_IPS": "10.0.0.5", "SKYPILOT_NUM_NODES": "1", "SKYPILOT_NODE_RANK": "0"}
    assert cluster_from(_args(), single) is None


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"coordinator": "h:1"}, "needs the coordinator"),
        ({"coordinator": "nohost", "num_processes": 2, "process_id": 0}, "not HOST:PORT"),
        ({"coordinator": "h:1", "num_processes": 2, "process_id": 2}, "not in 0..1"),
    ],
)
def test_cluster_refusals(kw, match) -> None:
    with pytest.raises(UserError, match=match):
        cluster_from(_args(**kw), {})


# What JAX 0.10's runtime wrote to a survivor's stderr (trimmed), one per way of losing a process.
PEER_TIMED_OUT = """E1208 00:54:48.962767   11553 coordination_service.cc:1520] Shutdown barrier failed:
INTERNAL: Barrier failed because: task is set to ERROR: UNAVAILABLE: Task 1 heartbeat timeout. This indicates that the remote task has failed
E1208 00:54:48.962961   11553 coordination_service.cc:1549] Use error polling to propagate the following error to all tasks: UNAVAILABLE: The following tasks are unhealthy (stopped sending heartbeats):
1
The tasks have crashed. Check the task logs for an earlier error
F1208 00:54:48.963377   11423 client.h:80] Terminating process because the JAX distributed service detected fatal errors.
*** Check failure stack trace: ***
    @     0x7f1de0040634  absl::lts_20260107::log_internal::LogMessage::SendToLog()
"""
COORDINATOR_GONE = """E1208 00:57:28.763253   24335 coordination_service_agent.cc:289] Polled an error from coordination service (this can be an error from this or another task).
F1208 00:57:28.763322   24335 client.h:80] Terminating process because the JAX distributed service detected fatal errors. This most likely indicates that another task died; see the other task logs for more details. absl::Status: UNAVAILABLE: Failed to send RPC to coordination service. Either the leader task was preempted/died/restarted unexpectedly or this task is experiencing network issues.
*** Check failure stack trace: ***
"""


def test_the_lost_process_is_read_from_the_runtime_report() -> None:
    assert multihost.lost_processes(PEER_TIMED_OUT) == [1]
    assert multihost.lost_processes(COORDINATOR_GONE) == [0]
    two = "The following tasks are unhealthy (stopped sending heartbeats):\n2\n3\nThe tasks"
    assert multihost.lost_processes(two) == [2, 3]
    assert multihost.lost_processes("F1208 client.h:80] Terminating process because") == []
    for line in (PEER_TIMED_OUT.splitlines()[0], COORDINATOR_GONE.splitlines()[1]):
        assert multihost.RUNTIME_LINE.match(line.encode()), line
    assert not multihost.RUNTIME_LINE.match(b"[Gloo] Rank 0 is connected to 1 peer ranks")


def test_a_process_command_line_reparses_to_the_same_run() -> None:
    from nanochat_tui.cli import build_parser
    from nanochat_tui.commands.train_cmd import _process_argv

    argv = ["run", "tiny", "--set", "model.depth=2", "--set", "a.b=c d", "--name", "x", "--detach"]
    args = build_parser().parse_args(argv)
    again = _process_argv(args, "h:1", 4, 3)
    assert again[:3] == [sys.executable, "-m", "nanochat_tui.cli"]
    child = build_parser().parse_args(again[3:])
    assert (child.prefab, child.overrides, child.name, child.resume) == (
        "tiny",
        ["model.depth=2", "a.b=c d"],
        "x",
        None,
    )
    assert child.quiet and not child.detach  # a detached process has no terminal to draw on
    assert cluster_from(child, {}) == ("h:1", 4, 3)
