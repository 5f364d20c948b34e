"""run.json: a run's process record (pid and its start time, host, mode, status), read and
merged atomically, and whether the recorded process is still the run's."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from nanochat_tui import rundir
from nanochat_tui.rundir import write_atomic


def read_record(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((Path(run_dir) / rundir.RUN_RECORD).read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def update_record(run_dir: Path, /, **fields: Any) -> dict[str, Any]:
    """Merge fields into run.json (atomic write)."""
    record = read_record(run_dir)
    record.update(fields)
    write_atomic(
        Path(run_dir) / rundir.RUN_RECORD, json.dumps(record, indent=2, default=str) + "\n"
    )
    return record


def process_start_time(pid: int) -> float | None:
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


def pid_alive(pid: int | None, started: float | None = None) -> bool:
    """True if ``pid`` runs (not a zombie) and, when known, started at ``started`` (no pid reuse)."""
    if not pid:
        return False
    try:
        import psutil

        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - float(started)) < 1.0
    except Exception:
        return False


def this_process_record(mode: str) -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "pid_started": process_start_time(os.getpid()),
        "host": socket.gethostname(),
        "mode": mode,
    }
