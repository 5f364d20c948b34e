"""Two processes on 127.0.0.1 with ``jax.distributed`` (CPU, gloo collectives, 2 devices each)
train a few steps of one run on a 2×2 mesh — parameters sharded across the two processes, each
process reading only the rows of each batch its own devices hold — and process 0's loss sequence
equals a single-process run of the same global batch. Plus the
coordinator/rank resolution from flags, ``NANOCHAT_*`` and SkyPilot's variables (no JAX)."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import tiny_overrides
from nanochat_tui import paths
from nanochat_tui.commands.train_cmd import COORDINATOR_PORT, cluster_from
from nanochat_tui.errors import UserError
from nanochat_tui.jax_engine.data import BatchLoader

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
    return env


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
    cmd = [sys.executable, "-m", "nanochat_tui.cli", "run", "tiny", "--quiet", "--name", "mh"]
    for item in overrides:
        cmd += ["--set", item]
    procs = [
        subprocess.Popen(
            [
                *cmd,
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
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
