"""One process of a multi-process run (``jax.distributed``), as a user starts it on each host.

``nanochat-tui run ... --num-processes N --process-id I`` is a small supervisor: it starts the
training process (the same command, marked by ``SUPERVISED_ENV``) as its child and watches it.

Why: when another process of the job dies, JAX's distributed runtime ends the survivors from a
native thread (``LOG(FATAL)``: exit status 134 and a C++ stack on stderr), at once when the
coordinator (process 0) is gone, after the heartbeat timeout otherwise. No Python code in that
process can catch it. The supervisor passes the child's stderr through line by line, holds back the
runtime's report from its first line on, and when the child ends that way prints one line naming
the lost process and exits 1; the report goes to the app log. It imports no JAX.

Signals: the child has its own process group, so Ctrl+C reaches it once, through the supervisor
(process 0: checkpoint and stop; twice: abort), as do SIGTERM and SIGHUP. On Linux the child gets
SIGTERM when the supervisor dies.

``--detach`` starts the supervisor itself in a new session, its output in ``log_path``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from nanochat_tui import allocator, paths, rundir

log = logging.getLogger(__name__)
SUPERVISED_ENV = "NANOCHAT_TUI_SUPERVISED"
# How long a process may go without a heartbeat before the coordinator declares it lost and the
# others end (JAX's default is 100 s): a survivor of a lost peer takes about this long to stop.
PEER_TIMEOUT_S = int(os.environ.get("NANOCHAT_PEER_TIMEOUT_S", "30"))

# A glog line of JAX's distributed runtime: "E1208 00:57:28.763253   24335 client.h:80] ..."
RUNTIME_LINE = re.compile(
    rb"^[WEF]\d{4} [\d:.]+\s+\d+ "
    rb"(coordination_service\w*|preemption_\w+|client|distributed\w*)\.(cc|h):\d+\]"
)
STACK_START = b"*** Check failure stack trace"
FATAL = b"Terminating process because"
UNHEALTHY = re.compile(r"tasks are unhealthy \(stopped sending heartbeats\):\s*((?:\d+\s+)+)")
TASK_TIMEOUT = re.compile(r"[Tt]ask (?:\S*task:)?(\d+) heartbeat timeout")
COORDINATOR_GONE = ("leader task", "Failed to send RPC to coordination service")


def is_supervised(environ: Mapping[str, str]) -> bool:
    """Whether this process is the training child of a supervisor."""
    return environ.get(SUPERVISED_ENV) == "1"


def lost_processes(report: str) -> list[int]:
    """Which processes the runtime's report says are gone: those that stopped sending heartbeats,
    else process 0 when the coordination service itself stopped answering; [] when it names none."""
    lost = {int(n) for m in UNHEALTHY.finditer(report) for n in m.group(1).split()}
    lost |= {int(m.group(1)) for m in TASK_TIMEOUT.finditer(report)}
    if not lost and any(marker in report for marker in COORDINATOR_GONE):
        lost = {0}
    return sorted(lost)


def lost_message(
    lost: list[int], *, rank: int, count: int, coordinator: str, run_dir: Path, timeout_s: int
) -> str:
    """The line that ends a process whose peer is gone, and what to do (UserError's format)."""
    if lost == [0]:
        what = f"lost process 0 of {count}, the coordinator at {coordinator} (it stopped answering)"
    elif lost:
        names = ", ".join(str(n) for n in lost)
        what = (
            f"lost process{'es' if len(lost) > 1 else ''} {names} of {count} "
            f"(no heartbeat for {timeout_s} s)"
        )
    else:
        what = f"lost contact with the other processes of the run (coordinator {coordinator})"
    ckpt = rundir.latest_checkpoint(run_dir) if run_dir.is_dir() else None
    if ckpt:
        fix = (
            f"the last checkpoint is {ckpt.path}; once every host is up, start each process "
            f"again with --resume {run_dir}"
        )
    else:
        fix = "the run saved no checkpoint; once every host is up, start it again with a new --name"
    return f"{what}; process {rank} stopped too\n  → {fix}"


class _Filter:
    """Passes stderr lines through until the runtime's report begins, then holds them."""

    def __init__(self, out) -> None:
        self.out = out
        self.held: list[bytes] = []

    def feed(self, line: bytes) -> None:
        if self.held or RUNTIME_LINE.match(line) or line.startswith(STACK_START):
            self.held.append(line)
        else:
            self.out.write(line)
            self.out.flush()

    def release(self) -> None:
        """Write what was held as it came (the child did not die of the runtime's abort)."""
        for line in self.held:
            self.out.write(line)
        self.out.flush()
        self.held.clear()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def supervise(argv: list[str], *, rank: int, count: int, coordinator: str, run_dir: Path) -> int:
    """Run ``argv`` (this process's training command) as a child and return its exit status; when
    JAX's runtime ended it because another process was lost, print one line naming that process
    instead of the runtime's report, and return 1."""
    env = {**os.environ, SUPERVISED_ENV: "1"}
    child = subprocess.Popen(
        argv, stderr=subprocess.PIPE, env=env, process_group=0, preexec_fn=_die_with_parent
    )

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            child.send_signal(signum)

    previous = {
        s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }
    err = sys.stderr.buffer
    filt = _Filter(err)
    try:
        assert child.stderr is not None
        for line in iter(child.stderr.readline, b""):
            filt.feed(line)
        code = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    fatal = code == -signal.SIGABRT or any(FATAL in line for line in filt.held)
    if not (filt.held and fatal):
        filt.release()
        if code < 0:
            name = signal.Signals(-code).name
            print(f"error: process {rank} of {count} was ended by {name}", file=sys.stderr)
            return 128 - code
        return code
    report = b"".join(filt.held).decode(errors="replace")
    log.error("process %d of %d: JAX's distributed runtime ended it:\n%s", rank, count, report)
    message = lost_message(
        lost_processes(report),
        rank=rank,
        count=count,
        coordinator=coordinator,
        run_dir=run_dir,
        timeout_s=PEER_TIMEOUT_S,
    )
    print(f"error: {message}", file=sys.stderr, flush=True)
    return 1


def log_path(name: str, rank: int) -> Path:
    """Where a detached process of a multi-process run writes its output."""
    return paths.log_dir() / f"{name}.process-{rank}.log"


def detach(argv: list[str], log_file: Path) -> int:
    """Start ``argv`` (the supervisor's command line) in a new session, its output appended to
    ``log_file``; returns its pid. It keeps running when the terminal or SSH session closes."""
    env = allocator.environment(dict(os.environ))
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.pop(SUPERVISED_ENV, None)
    with open(log_file, "ab") as fh:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
        )
    return process.pid
