"""``train(config, run_dir, on_event, control, resume)``: the engine's entry point.

It runs the generic loop (loop.py) for the config's stage (``train.stage``, tasks/) and turns
every way a run can end into events: ``run_end`` always, plus one ``error`` event with a
remediation when it fails (out of device memory, a crash, a known failure). A resume refused
before any step raises ``ResumeRefused`` with no event emitted and no file changed. It talks to
the world only through ``on_event`` (plain dict events, telemetry/events.py) and the control inbox.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from nanochat_tui.config.schema import Config
from nanochat_tui.errors import ResumeRefused, UserError
from nanochat_tui.jax_engine.control import ControlInbox
from nanochat_tui.jax_engine.loop import RunState, TrainResult, run_loop, write_run_config

__all__ = ["TrainResult", "train", "write_run_config"]


def _is_oom(err: BaseException) -> bool:
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
    except UserError as err:
        _fail(run, err.message, err.remediation, "crash")
        raise
    except Exception as err:
        if _is_oom(err):
            msg = f"out of device memory at step {run.step} ({type(err).__name__})"
            fix = (
                f"lower train.device_batch_size (now {config.train.device_batch_size}) and keep "
                f"train.total_batch_size; gradient accumulation makes up the difference"
            )
            _fail(run, msg, fix, "oom")
            return TrainResult(
                "failed", run.step, run.val_bpb, run.last_checkpoint, f"{msg}\n  → {fix}"
            )
        _fail(
            run,
            f"{type(err).__name__}: {err}",
            "see the crash dump; rerun with --debug for the full traceback",
            "crash",
        )
        raise


def _fail(run: RunState, message: str, remediation: str, kind: str) -> None:
    last: Any = run.last_checkpoint
    run.emit(
        "error",
        message=message,
        remediation=remediation,
        last_checkpoint=None if last is None else str(last),
        kind=kind,
        step=run.step,
    )
    run.emit("run_end", step=run.step, status="failed", final_val_bpb=run.val_bpb)
