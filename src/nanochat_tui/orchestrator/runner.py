"""Start, list, attach to and steer runs — in a thread of this process or as a detached process.

    execute(config, run_dir)     run training here, in the current thread, with telemetry wired
                                 (orchestrator/execute.py)
    start_run(config, mode=...)  "thread": a worker thread holding a ControlInbox (the TUI)
                                 "detached": ``python -m nanochat_tui.orchestrator.detached RUN_DIR``
                                 in its own session; survives the TUI exiting and SSH dropping
    attach(run_dir)              a RunHandle for any run (live or not) from its directory
    resume_run(run_dir)          continue a stopped/crashed run from its latest checkpoint (a
                                 pipeline: from its first unfinished step)
    move_to_background(run)      stop a thread run at a checkpoint and resume it detached

run.json lives in orchestrator/records.py, statuses (``summarize``, ``list_runs``) in
orchestrator/summaries.py.

Both modes look the same to a UI: read run_dir/events.jsonl with JsonlTailer and steer through
``RunHandle.checkpoint_now() / patch() / stop()``. run.json records pid/host/mode/status.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, cast

from nanochat_tui import allocator, rundir
from nanochat_tui.config import ConfigError, validate_patch
from nanochat_tui.config.loader import parse_value, to_yaml
from nanochat_tui.config.schema import Config
from nanochat_tui.errors import UserError
from nanochat_tui.jax_engine.control import ControlInbox
from nanochat_tui.orchestrator import pipeline
from nanochat_tui.orchestrator.execute import execute
from nanochat_tui.orchestrator.naming import (
    default_run_name,
    load_run_config,
    name_problem,
    refuse_model_change,
    resolve_run_dir,
    run_dir_for,
)
from nanochat_tui.orchestrator.records import (
    pid_alive,
    process_start_time,
    read_record,
    this_process_record,
    update_record,
)
from nanochat_tui.orchestrator.summaries import RunSummary, summarize
from nanochat_tui.telemetry.events import Event

__all__ = [  # the orchestrator's front door: front-ends import these from here
    "DetachedRun",
    "RunHandle",
    "RunSummary",
    "ThreadRun",
    "attach",
    "default_run_name",
    "execute",
    "load_run_config",
    "move_to_background",
    "name_problem",
    "pid_alive",
    "read_record",
    "refuse_model_change",
    "resolve_run_dir",
    "resume_run",
    "run_dir_for",
    "start_run",
    "summarize",
    "this_process_record",
    "update_record",
]

NOT_RUNNING = "check `nanochat-tui runs`; resume it with `nanochat-tui run --resume RUN_DIR`"


# ---------------------------------------------------------------- handles


class RunHandle:
    """A run, live or not. Controls raise UserError when the run cannot be steered."""

    mode = "unknown"

    def __init__(self, run_dir: Path, config: Config | None = None) -> None:
        self.run_dir = Path(run_dir)
        self._config = config

    @property
    def name(self) -> str:
        """The run's name (run.json, read once: the status bar asks every second)."""
        name = getattr(self, "_name", None)
        if name is None:
            name = read_record(self.run_dir).get("name")
            if name:
                self._name = name
        return name or self.run_dir.name

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_run_config(self.run_dir)
        return self._config

    @property
    def events_path(self) -> Path:
        return self.run_dir / rundir.EVENTS

    def summary(self) -> RunSummary:
        return summarize(self.run_dir)

    def status(self) -> str:
        """running | finished | stopped | failed | unknown."""
        return self.summary().status

    def is_alive(self) -> bool:
        return self.status() == "running"

    def _send(self, command: dict[str, Any]) -> None:
        raise UserError("run is not running", NOT_RUNNING)

    def checkpoint_now(self) -> None:
        self._send({"cmd": "checkpoint"})

    def stop(self) -> None:
        self._send({"cmd": "stop"})

    def patch(self, changes: dict[str, Any]) -> dict[str, Any]:
        """Validate (config.validate_patch; raises ConfigError) and send; returns typed changes."""
        typed = {k: parse_value(v) if isinstance(v, str) else v for k, v in changes.items()}
        if not typed:
            raise ConfigError("nothing to patch; give KEY=VALUE pairs")
        validate_patch(self.config, typed)
        self._send({"cmd": "patch", "changes": typed})
        return typed

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.run_dir}>"


class ThreadRun(RunHandle):
    """A run on a worker thread of this process, steered through its ControlInbox."""

    mode = "thread"

    def __init__(
        self, config: Config, run_dir: Path, *, resume: bool = False, callbacks=()
    ) -> None:
        super().__init__(run_dir, config)
        self.pipeline = bool(config.pipeline)  # run_dir is the parent; its steps run in turn
        self.inbox = ControlInbox()
        self.hub: Any = None
        self.result: Any = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._main,
            args=(resume, tuple(callbacks)),
            name=f"run-{run_dir.name}",
            daemon=True,
        )

    def start(self) -> ThreadRun:
        _THREAD_RUNS[str(self.run_dir.resolve())] = self
        self._thread.start()
        return self

    def _main(self, resume: bool, callbacks: tuple) -> None:
        hub_ready = lambda hub: setattr(self, "hub", hub)  # noqa: E731
        try:
            if self.pipeline:
                done = pipeline.run_steps(
                    self.run_dir,
                    resume=resume,
                    control=self.inbox,
                    callbacks=callbacks,
                    mode="thread",
                    hub_ready=hub_ready,
                )
                self.result = done[-1][1] if done else None
                return
            self.result = execute(
                self.config,
                self.run_dir,
                resume=resume,
                control=self.inbox,
                callbacks=callbacks,
                mode="thread",
                hub_ready=hub_ready,
            )
        except BaseException as err:  # recorded in events.jsonl by execute(); keep for the UI
            self.error = err

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def status(self) -> str:
        if self._thread.is_alive():
            return "running"
        return super().status()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop_and_wait(self, timeout: float | None = None) -> str:
        """Ask the run to stop (it checkpoints, emits run_end, records ``stopped``) and wait for
        it; returns the final status. Quitting the app must go through here: a daemon thread
        killed by interpreter exit leaves the run looking crashed with no checkpoint."""
        if self._thread.is_alive():
            self.inbox.put({"cmd": "stop"})
            if not self.join(timeout):
                raise UserError(
                    f"run {self.name} did not stop within {timeout:.0f} s",
                    "wait for the current step (or evaluation) to finish and try again",
                )
        return super().status()

    def _send(self, command: dict[str, Any]) -> None:
        if not self._thread.is_alive():
            raise UserError("run is not running", NOT_RUNNING)
        self.inbox.put(command)


class DetachedRun(RunHandle):
    """A run in its own process session, steered over its 0600 control socket."""

    mode = "detached"

    def __init__(
        self, run_dir: Path, config: Config | None = None, process: subprocess.Popen | None = None
    ) -> None:
        super().__init__(run_dir, config)
        self.process = process

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else read_record(self.run_dir).get("pid")

    def is_alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        record = read_record(self.run_dir)
        return pid_alive(record.get("pid"), record.get("pid_started"))

    def status(self) -> str:
        summary = self.summary()
        if summary.status in ("failed", "unknown") and self.is_alive():
            return "running"
        return summary.status

    def socket_path(self) -> Path:
        record = read_record(self.run_dir)
        if record.get("socket"):
            return Path(record["socket"])
        from nanochat_tui.orchestrator.control import socket_path_for

        return socket_path_for(self.run_dir)

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Block until the control socket answers (or the process died)."""
        from nanochat_tui.orchestrator.control import request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_alive():
                raise UserError(
                    "the detached run exited during start-up",
                    f"see {self.run_dir / 'detached.log'} and events.jsonl",
                )
            if read_record(self.run_dir).get("socket"):
                with contextlib.suppress(UserError):
                    if request(self.socket_path(), {"cmd": "ping"}, timeout=2).get("ok"):
                        return
            time.sleep(0.1)
        raise UserError("the detached run did not open its control socket", "see detached.log")

    def request(self, payload: dict[str, Any]) -> dict[str, Any]:
        from nanochat_tui.orchestrator.control import request

        if not self.is_alive():
            raise UserError("run is not running", NOT_RUNNING)
        response = request(self.socket_path(), payload)
        if not response.get("ok"):
            error = str(response.get("error") or "refused")
            if payload.get("cmd") == "patch":
                raise ConfigError(error)
            raise UserError(f"the run refused {payload.get('cmd')}: {error}")
        return response

    def _send(self, command: dict[str, Any]) -> None:
        self.request(command)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the process to end; True if it has."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_alive():
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.1)
        return True


_THREAD_RUNS: dict[str, ThreadRun] = {}


# ---------------------------------------------------------------- start / attach


def start_run(
    config: Config,
    *,
    name: str | None = None,
    mode: str = "thread",
    resume_dir: Path | None = None,
    callbacks: Iterable[Callable[[Event], None]] = (),
    wait_ready: bool = True,
) -> RunHandle:
    """Start training from ``config`` (fresh, ``run.init_from`` weights, or resuming ``resume_dir``).

    A pipeline config (``config.pipeline``) starts a pipeline run (orchestrator/pipeline.py): the
    handle's run_dir is the parent, whose steps run one after another in the same thread or
    detached process. Resuming a pipeline's parent continues at its first unfinished step.
    """
    if mode not in ("thread", "detached"):
        raise UserError(f"unknown run mode {mode!r}", "use 'thread' or 'detached'")
    resume = resume_dir is not None
    if resume:
        run_dir = Path(resume_dir).expanduser()
        if not run_dir.is_dir():
            raise UserError(f"{run_dir} is not a directory", "pass a run directory to resume")
        if pipeline.is_pipeline(run_dir):
            pipeline.check_resumable(run_dir)
            config = load_run_config(run_dir)  # the steps' own configs are read as they start
        elif summarize(run_dir).status == "running":
            raise UserError(f"{run_dir} is already running", "attach to it instead")
        else:
            refuse_model_change(load_run_config(run_dir), config, run_dir)
            config = config.model_copy(deep=True)  # the caller's config (the run's own + edits)
            config.run.name = config.run.name or run_dir.name
    elif config.pipeline:
        config, run_dir = pipeline.create(config, name)
    else:
        config, run_dir = resolve_run_dir(config, name)
    if mode == "thread":
        return ThreadRun(config, run_dir, resume=resume, callbacks=callbacks).start()
    return _spawn_detached(config, run_dir, resume=resume, wait_ready=wait_ready)


def _spawn_detached(
    config: Config, run_dir: Path, *, resume: bool, wait_ready: bool
) -> DetachedRun:
    rundir.write_atomic(run_dir / rundir.CONFIG, to_yaml(config))
    update_record(
        run_dir,
        name=config.run.name,
        run_dir=str(run_dir.resolve()),
        mode="detached",
        status="starting",
        host=socket.gethostname(),
        started=time.time(),
    )
    argv = [sys.executable, "-m", "nanochat_tui.orchestrator.detached", str(run_dir.resolve())]
    if resume:
        argv.append("--resume")
    env = allocator.environment(dict(os.environ))
    env.setdefault("PYTHONUNBUFFERED", "1")
    with open(run_dir / "detached.log", "ab") as log_fh:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log_fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=env,
            cwd=str(run_dir),
        )
    update_record(run_dir, pid=process.pid, pid_started=process_start_time(process.pid))
    handle = DetachedRun(run_dir, config, process)
    if wait_ready:
        handle.wait_ready()
    return handle


def resume_run(run_dir: Path, *, mode: str = "thread", wait_ready: bool = True) -> RunHandle:
    """Resume a stopped or crashed run from its latest checkpoint, with its own config."""
    run_dir = Path(run_dir).expanduser()
    if pipeline.is_pipeline(run_dir):  # continues at its first unfinished step
        return start_run(
            load_run_config(run_dir), mode=mode, resume_dir=run_dir, wait_ready=wait_ready
        )
    if rundir.latest_checkpoint(run_dir) is None:
        raise UserError(
            f"{run_dir.name} has no checkpoint to resume from",
            "start a new run instead (a run saves its first checkpoint at train.checkpoint_every)",
        )
    return start_run(load_run_config(run_dir), mode=mode, resume_dir=run_dir, wait_ready=wait_ready)


def move_to_background(run: ThreadRun, timeout: float | None = None) -> DetachedRun:
    """Hand a thread run to a detached process: stop it (a checkpoint at the current step), then
    resume from that checkpoint in its own session, so no step is lost and the app may exit."""
    status = run.stop_and_wait(timeout)
    if status != "stopped":
        raise UserError(
            f"run {run.name} ended as '{status}' instead of stopping",
            "see its events (the event log panel) before resuming it from the Runs pane",
        )
    return cast(DetachedRun, resume_run(run.run_dir, mode="detached"))


def attach(run_dir: Path) -> RunHandle:
    """A handle for any run directory: a live thread run of this process, a detached run, or a
    finished/foreign run (whose controls raise UserError "run is not running")."""
    run_dir = Path(run_dir).expanduser()
    if not rundir.is_run_dir(run_dir) and not (run_dir / rundir.RUN_RECORD).is_file():
        raise UserError(f"{run_dir} is not a run directory", "see `nanochat-tui runs` for runs")
    live = _THREAD_RUNS.get(str(run_dir.resolve()))
    if live is not None and live.is_alive():
        return live
    record = read_record(run_dir)
    # detached: also a thread run since moved to the background; multi-process: its process 0
    # serves the control socket for the whole job (commands/train_cmd.py)
    if record.get("mode") in ("detached", "multi-process"):
        return DetachedRun(run_dir)
    return live if live is not None else _ForeignRun(run_dir, record)


class _ForeignRun(RunHandle):
    """A thread run owned by another process (or a finished one): readable, not steerable."""

    def __init__(self, run_dir: Path, record: dict[str, Any]) -> None:
        super().__init__(run_dir)
        self.mode = record.get("mode", "unknown")
        self._pid = record.get("pid")

    def _send(self, command: dict[str, Any]) -> None:
        if self.status() == "running":
            raise UserError(
                f"run is owned by another process (pid {self._pid})",
                "an in-process run can only be steered from the TUI that started it; "
                "use `run --detach` for runs you want to steer from anywhere",
            )
        raise UserError("run is not running", NOT_RUNNING)
