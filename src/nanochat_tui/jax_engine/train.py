"""``train(config, run_dir, on_event, control, resume)``: the engine's entry point.

It runs the generic loop (loop.py) for the config's stage (``train.stage``, tasks/) and turns
every way a run can end into events: ``run_end`` always, plus one ``error`` event with a
remediation when it fails (out of device memory, a full disk, a crash, a known failure). A resume refused
before any step raises ``ResumeRefused`` with no event emitted and no file changed. It talks to
the world only through ``on_event`` (plain dict events, telemetry/events.py) and the control inbox.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nanochat_tui import rundir
from nanochat_tui.config.schema import Config
from nanochat_tui.errors import DiskFull, ResumeRefused, UserError, is_disk_full
from nanochat_tui.jax_engine.control import ControlInbox
from nanochat_tui.jax_engine.loop import RunState, TrainResult, run_loop, write_run_config

__all__ = ["TrainResult", "train", "write_run_config"]


def _is_oom(err: BaseException) -> bool:
    """Device memory ran out (a full disk also says RESOURCE_EXHAUSTED: ask ``is_disk_full`` first)."""
    return "RESOURCE_EXHAUSTED" in str(err) or "Out of memory" in str(err)


def train(
    config: Config,
    run_dir: Path,
    on_event: Callable[[dict], None],
    control: ControlInbox | None = None,
    resume: bool = False,
    hooks: Any = None,
) -> TrainResult:
    """Train ``config`` into ``run_dir``; see the module docstring. ``hooks``: plugin engine
    hooks (jax_engine/hooks.py) that the orchestrator resolved for this config."""
    run = RunState(config, Path(run_dir), on_event, hooks=hooks)
    try:
        return run_loop(run, control, resume)
    except ResumeRefused:
        raise
    except DiskFull as err:  # a checkpoint save found no space (jax_engine/checkpoint.py)
        return _failed(run, err.message, err.remediation, "disk_full")
    except UserError as err:
        _fail(run, err.message, err.remediation, "crash")
        raise
    except Exception as err:
        if is_disk_full(err):  # any other write of the run (events, config) that found no space
            name = getattr(err, "filename", None)
            folder = Path(name).parent if name else run.run_dir
            msg = f"disk full at step {run.step}: {str(err).splitlines()[0][:300]}"
            fix = f"free space in {folder}, then resume: `nanochat-tui run --resume {run.run_dir}`"
            return _failed(run, msg, fix, "disk_full")
        if _is_oom(err):
            msg = f"out of device memory at step {run.step} ({type(err).__name__})"
            fix = (
                f"lower train.device_batch_size (now {config.train.device_batch_size}) and keep "
                f"train.total_batch_size; gradient accumulation makes up the difference"
            )
            return _failed(run, msg, fix, "oom")
        _fail(
            run,
            f"{type(err).__name__}: {err}",
            "see the crash dump; rerun with --debug for the full traceback",
            "crash",
        )
        raise


def _newest_checkpoint(run: RunState) -> Path | None:
    """The newest committed checkpoint on disk: the loop may not have reported the last saves
    yet when a failure cuts it short."""
    newest = rundir.latest_checkpoint(run.run_dir)
    return newest.path if newest is not None else run.last_checkpoint


def _fail(run: RunState, message: str, remediation: str, kind: str) -> None:
    last = _newest_checkpoint(run)
    run.emit(
        "error",
        message=message,
        remediation=remediation,
        last_checkpoint=None if last is None else str(last),
        kind=kind,
        step=run.step,
    )
    run.emit("run_end", step=run.step, status="failed", final_val_bpb=run.val_bpb)


def _failed(run: RunState, message: str, remediation: str, kind: str) -> TrainResult:
    """A known failure: its events, and the failed result carrying the one-line message."""
    _fail(run, message, remediation, kind)
    return TrainResult(
        "failed", run.step, run.val_bpb, _newest_checkpoint(run), f"{message}\n  → {remediation}"
    )
