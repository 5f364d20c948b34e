"""Run status without reading whole logs: an incremental digest of events.jsonl per file, folded
with run.json and pid liveness into a ``RunSummary``; ``list_runs`` for the Runs pane and CLI.
A pipeline's parent run (orchestrator/pipeline.py) is summarized from its steps: "running" with
detail "step 2/2 sft", "failed" with "at step 1/2 base" and that step's reason, "finished"."""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

from nanochat_tui import paths, rundir
from nanochat_tui.orchestrator.records import pid_alive, read_record
from nanochat_tui.telemetry.events import Event
from nanochat_tui.telemetry.jsonl import parse_line

STATUSES = ("running", "finished", "stopped", "failed", "unknown")


@dataclass
class RunSummary:
    run_dir: Path
    name: str
    status: str  # running | finished | stopped | failed | unknown
    step: int | None
    mode: str  # thread | detached | unknown
    started: float | None
    detail: str = ""  # e.g. "crashed" (process gone without run_end), "starting"
    reason: str = ""  # why a failed run failed: its last error event's message, one line
    pid: int | None = None
    host: str | None = None
    last_event: float | None = None


@dataclass
class _Digest:
    """What a run summary needs from events.jsonl, folded incrementally (see ``events_digest``)."""

    offset: int = 0  # bytes consumed (always at a line boundary)
    mtime_ns: int = 0
    inode: int = 0
    step: int | None = None
    end: Event | None = None
    error: str | None = None  # the last ``error`` event's message since the last run_start
    first_time: float | None = None
    last_time: float | None = None


_DIGESTS: dict[str, _Digest] = {}
_DIGEST_LOCK = threading.Lock()
_BOUNDARY = (b"run_end", b"run_start", b'"type":"error"', b'"type": "error"')


def _fold_lines(digest: _Digest, data: bytes) -> None:
    """Fold complete lines: only run_start/run_end lines and the newest line with a step are
    JSON-parsed (a byte search finds them), so a 200-events/s log costs almost nothing."""
    lines = data.split(b"\n")
    for line in lines:
        if any(word in line for word in _BOUNDARY):
            ev = parse_line(line)
            if ev is not None:
                if ev.get("type") == "run_end":
                    digest.end = ev
                elif ev.get("type") == "run_start":
                    digest.end = None  # a resumed run starts again after an earlier run_end
                    digest.error = None
                elif ev.get("type") == "error":
                    digest.error = failure_reason(ev)
    if digest.first_time is None:
        for line in lines:
            ev = parse_line(line)
            if ev is not None:
                digest.first_time = ev.get("time")
                break
    found_time = False
    for line in reversed(lines):
        ev = parse_line(line)
        if ev is None:
            continue
        if not found_time:
            digest.last_time, found_time = ev.get("time"), True
        if isinstance(ev.get("step"), int):
            digest.step = ev["step"]
            break
        if b'"step"' not in data:
            break


def failure_reason(event: Event, width: int = 200) -> str:
    """An ``error`` event's message as one line (its first line, at most ``width`` characters)."""
    message = str(event.get("message") or "failed").strip()
    line = message.splitlines()[0] if message else "failed"
    return line if len(line) <= width else line[: width - 1] + "…"


def events_digest(path: Path, max_bytes: int = 256 * 1024) -> _Digest:
    """Step / last run_end / first and last event time of an events.jsonl, cached per file.

    A ``stat`` tells whether anything changed; only the bytes appended since the last call are
    read (a first look at a huge log reads its last ``max_bytes``). A shrunk or replaced file is
    re-read. Thread-safe; returns a copy.
    """
    key = str(path)
    try:
        st = os.stat(path)
    except OSError:
        return _Digest()
    with _DIGEST_LOCK:
        digest = _DIGESTS.get(key)
        if (
            digest is not None
            and st.st_size == digest.offset
            and st.st_mtime_ns == digest.mtime_ns
            and st.st_ino == digest.inode
        ):
            return _Digest(**digest.__dict__)
        if digest is None or st.st_size < digest.offset or st.st_ino != digest.inode:
            digest = _Digest()
        start = digest.offset
        try:
            with open(path, "rb") as fh:
                if start == 0 and st.st_size > max_bytes:
                    start = st.st_size - max_bytes
                    fh.seek(start)
                    data = fh.read(st.st_size - start)
                    cut = data.find(b"\n") + 1  # the first line may be cut
                    start, data = start + cut, data[cut:]
                else:
                    fh.seek(start)
                    data = fh.read(st.st_size - start)
        except OSError:
            return _Digest()
        complete = data.rfind(b"\n") + 1  # a partial last line waits for its newline
        if complete:
            _fold_lines(digest, data[:complete])
        digest.offset = start + complete
        digest.mtime_ns, digest.inode = st.st_mtime_ns, st.st_ino
        _DIGESTS[key] = digest
        return _Digest(**digest.__dict__)


def is_pipeline(run_dir: Path) -> bool:
    """True for a pipeline's parent run directory (run.json ``kind: "pipeline"``)."""
    return read_record(run_dir).get("kind") == "pipeline"


def _process_alive(record: dict) -> tuple[bool, bool]:
    """(the record's process runs, the record is of this host)."""
    same_host = record.get("host") in (None, socket.gethostname())
    alive = bool(record) and same_host and pid_alive(record.get("pid"), record.get("pid_started"))
    return alive, same_host


def _summarize_pipeline(run_dir: Path, record: dict) -> RunSummary:
    """The parent's status: that of its first unfinished step (step, reason and all), "running"
    between steps while its process lives, "finished" when every step did."""
    summary = RunSummary(
        run_dir,
        record.get("name") or run_dir.name,
        "unknown",
        None,
        record.get("mode", "unknown"),
        record.get("started"),
        pid=record.get("pid"),
        host=record.get("host"),
    )
    summary.last_event = events_digest(run_dir / rundir.EVENTS).last_time
    alive, same_host = _process_alive(record)
    steps = [s for s in record.get("steps") or [] if isinstance(s, dict)]
    for entry in steps:
        label = f"step {entry.get('index')}/{len(steps)} {entry.get('stage')}"
        step_dir = Path(str(entry.get("run_dir")))
        started = bool(read_record(step_dir).get("status"))  # prepared is not started
        step = summarize(step_dir) if started else None
        if step is not None and step.status == "finished":
            summary.step = step.step
            continue
        if step is None or step.status == "unknown":  # not started yet
            summary.step = None
            if alive:
                summary.status, summary.detail = "running", f"starting {label}"
            elif not same_host:
                summary.status, summary.detail = record.get("status", "unknown"), label
            elif record.get("status") in ("stopped", "failed"):
                summary.status, summary.detail = record["status"], f"before {label}"
            else:
                summary.status, summary.detail = "failed", f"crashed before {label}"
            return summary
        summary.status, summary.step, summary.reason = step.status, step.step, step.reason
        summary.detail = label if step.status == "running" else f"at {label}"
        if step.detail:
            summary.detail += f", {step.detail}"
        return summary
    summary.status = "finished" if steps else "unknown"
    return summary


def summarize(run_dir: Path) -> RunSummary:
    """Status from run.json + the last run_end event + pid liveness (cheap: see events_digest)."""
    run_dir = Path(run_dir)
    record = read_record(run_dir)
    if record.get("kind") == "pipeline":
        return _summarize_pipeline(run_dir, record)
    digest = events_digest(run_dir / rundir.EVENTS)
    step = digest.step
    end = digest.end
    name = record.get("name") or run_dir.name
    mode = record.get("mode", "unknown")
    started = record.get("started") or digest.first_time
    pid = record.get("pid")
    summary = RunSummary(
        run_dir, name, "unknown", step, mode, started, pid=pid, host=record.get("host")
    )
    summary.last_event = digest.last_time
    alive, same_host = _process_alive(record)
    if (
        end is not None
        and alive
        and float(record.get("started") or 0) > float(end.get("time") or 0)
    ):
        end = None  # resumed after that run_end; the new process has not emitted run_start yet
    if end is not None:
        summary.status = end.get("status", "unknown")
        if end.get("step") is not None:
            summary.step = end["step"]
        if summary.status == "failed":
            summary.reason = digest.error or ""
        return summary
    if not record:
        return summary
    if not same_host:
        summary.status, summary.detail = record.get("status", "unknown"), f"on {record.get('host')}"
        return summary
    if alive:
        summary.status = "running"
        summary.detail = "starting" if record.get("status") == "starting" else ""
    elif record.get("status") in ("finished", "stopped", "failed"):
        summary.status = record["status"]
        if summary.status == "failed":
            summary.reason = digest.error or ""
    else:
        summary.status, summary.detail = "failed", "crashed"
        summary.reason = digest.error or ""
    return summary


def list_runs(runs_dir: Path | None = None) -> list[RunSummary]:
    """Every run under ``runs_dir`` (default: the user runs dir), newest first."""
    parent = Path(runs_dir) if runs_dir is not None else paths.runs_dir()
    return [summarize(d) for d in rundir.list_run_dirs(parent)]
