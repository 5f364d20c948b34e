"""Pipelines are runs: a prefab's ``pipeline:`` steps run in order, each from the previous step's
weights, under one parent run directory.

    <name>/              the parent: config.yaml (the prefab, pipeline included), run.json with
                         ``kind: "pipeline"``, ``steps`` (each step's index, name, stage, run_dir)
                         and ``current``; events.jsonl receives every step's events in order
                         (so Live, the event log and ``tail -f`` follow the whole pipeline)
    <name>.<i>-<step>/   each step: an ordinary run (the Runs, Checkpoints, Chat and Evals panes
                         see it like any run), configured as the prefab with the pipeline removed,
                         ``train.stage`` set to the step's stage, then the step's own ``set``

A step after the first starts from the previous step's last checkpoint (``run.init_from`` = that
checkpoint: the lineage in the child's config.yaml). Every step's run.json records
``pipeline = {"name", "index", "of", "stage", "parent"}``. A failed or stopped step ends the
pipeline; resuming the parent (``run --resume PARENT_DIR``, the Runs pane's ``r``) continues at
the first unfinished step: from its checkpoint when it has one, else that step starts over (its
directory is cleared). The parent's status is aggregated from its steps (summaries.py).

``start_run`` (runner.py) runs a pipeline in any mode through ``run_steps``; one ControlInbox
serves every step, so stop/checkpoint/patch reach the step that is running, and a stop between
steps ends the pipeline before the next one starts.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanochat_tui import rundir
from nanochat_tui.config import apply_overrides
from nanochat_tui.config.loader import ConfigError, to_yaml
from nanochat_tui.config.schema import Config
from nanochat_tui.errors import UserError
from nanochat_tui.jax_engine.control import ControlInbox
from nanochat_tui.orchestrator.execute import execute
from nanochat_tui.orchestrator.naming import (
    default_run_name,
    load_run_config,
    resolve_run_dir,
    run_dir_for,
)
from nanochat_tui.orchestrator.records import read_record, this_process_record, update_record
from nanochat_tui.orchestrator.summaries import is_pipeline, summarize
from nanochat_tui.telemetry.events import Event, make_event
from nanochat_tui.telemetry.jsonl import JsonlWriter


@dataclass
class StepPlan:
    index: int  # 1-based
    of: int
    pipeline: str  # the pipeline's name (the base of every step's run name)
    name: str  # the step's run name
    stage: str
    config: Config  # without pipeline; run.init_from is set when the step starts

    @property
    def run_dir(self) -> Path:
        return run_dir_for(self.config, self.name)


def plan(config: Config, name: str | None = None, *, fresh: bool = True) -> list[StepPlan]:
    """The steps of ``config.pipeline`` with their run names and validated configs. Refuses a
    step whose overrides are invalid or (``fresh``: a new pipeline) whose run directory exists,
    before anything runs."""
    base = name or config.run.name or default_run_name(config)
    flat = config.model_copy(deep=True)
    flat.pipeline = []
    steps = []
    for i, step in enumerate(config.pipeline, start=1):
        overrides = {"train.stage": step.stage, **step.set}
        try:
            step_config = apply_overrides(flat, overrides)
        except (UserError, ConfigError) as err:
            raise UserError(
                f"pipeline step {i} ({step.stage}): {err}", "fix that step's `set:` in the prefab"
            ) from None
        if i > 1 and "run.init_from" in step.set:
            raise UserError(
                f"pipeline step {i} sets run.init_from",
                "a step after the first starts from the previous step; remove it",
            )
        planned = StepPlan(
            i, len(config.pipeline), base, f"{base}.{i}-{step.name or step.stage}", step.stage,
            step_config,
        )  # fmt: skip
        if fresh and planned.run_dir.exists() and any(planned.run_dir.iterdir()):
            raise UserError(
                f"run directory {planned.run_dir} already exists",
                "pick another run name (--name); resume a pipeline with `run --resume PARENT_DIR`",
            )
        steps.append(planned)
    return steps


def create(config: Config, name: str | None = None) -> tuple[Config, Path]:
    """Make a new pipeline's parent run directory (config.yaml, run.json with its steps) after
    checking every step; returns the parent's config (named) and directory."""
    steps = plan(config, name)
    config, parent = resolve_run_dir(config, steps[0].pipeline)
    rundir.write_atomic(parent / rundir.CONFIG, to_yaml(config))
    update_record(
        parent,
        name=config.run.name,
        run_dir=str(parent.resolve()),
        kind="pipeline",
        status="starting",
        started=time.time(),
        current=None,
        steps=[
            {
                "index": s.index,
                "of": s.of,
                "name": s.name,
                "stage": s.stage,
                "run_dir": str(s.run_dir.resolve()),
            }
            for s in steps
        ],
    )
    return config, parent


def check_resumable(parent: Path) -> None:
    """Refuse to resume a pipeline that is running or whose every step finished."""
    summary = summarize(parent)
    if summary.status == "running":
        raise UserError(f"pipeline {parent.name} is already running", "attach to it instead")
    if summary.status == "finished":
        raise UserError(
            f"pipeline {parent.name} finished every step; nothing to resume",
            "start a new run, or resume one step on its own (`run --resume STEP_DIR`)",
        )


def prepare_step(step: StepPlan, parent: str | None) -> tuple[Config, Path]:
    """Create the step's run directory and record; a step after the first starts from
    ``parent`` (the previous step's last checkpoint)."""
    step_config = step.config.model_copy(deep=True)
    if step.index > 1:
        step_config.run.init_from = parent
    step_config, run_dir = resolve_run_dir(step_config, step.name)
    update_record(
        run_dir,
        pipeline={
            "name": step.pipeline,
            "index": step.index,
            "of": step.of,
            "stage": step.stage,
            "parent": step_config.run.init_from,
        },
    )
    return step_config, run_dir


def step_output(step: StepPlan, run_dir: Path) -> str:
    """The last checkpoint of a finished step: the next step's ``run.init_from``."""
    latest = rundir.latest_checkpoint(run_dir)
    if latest is None:
        raise UserError(
            f"pipeline step {step.index} ({step.stage}) finished without a checkpoint",
            f"check {run_dir}; the next step needs its weights",
        )
    return str(latest.path)


def _stop_asked(control: ControlInbox | None) -> bool:
    """Between steps: a stop ends the pipeline; other commands were for the step that ended."""
    if control is None:
        return False
    return any(command.get("cmd") == "stop" for command in control.drain())


StepHook = Callable[[StepPlan, Path], None]


def run_steps(
    parent: Path,
    *,
    resume: bool = False,
    control: ControlInbox | None = None,
    callbacks: Iterable[Callable[[Event], None]] = (),
    mode: str = "headless",
    on_step: StepHook | None = None,
    on_step_end: Callable[[StepPlan, Path, Any], None] | None = None,
    hub_ready: Callable[[Any], None] | None = None,
) -> list[tuple[Path, Any]]:
    """Run the pipeline in ``parent`` in this thread: every step (``resume``: from the first
    unfinished one). Returns ``(run_dir, TrainResult)`` per step run; stops after a step that
    did not finish. Keeps the parent's run.json (status, current step) and events.jsonl."""
    parent = Path(parent)
    if not is_pipeline(parent):
        raise UserError(f"{parent} is not a pipeline run", "see `nanochat-tui runs`")
    config = load_run_config(parent)
    steps = plan(config, read_record(parent).get("name") or parent.name, fresh=False)
    update_record(
        parent,
        status="running",
        started=time.time(),
        ended=None,
        resumed=resume,
        **this_process_record(mode),
    )
    mirror = JsonlWriter(parent / rundir.EVENTS)
    socket_path = read_record(parent).get("socket")  # detached: steer a step's dir as well
    done: list[tuple[Path, Any]] = []
    status, init_from = "failed", config.run.init_from
    try:
        for step in steps:
            run_dir = step.run_dir
            if resume and summarize(run_dir).status == "finished":
                init_from = step_output(step, run_dir)
                continue
            if _stop_asked(control):
                status = "stopped"
                break
            update_record(parent, current=step.index)
            if resume and rundir.latest_checkpoint(run_dir) is not None:
                step_config, resume_step = load_run_config(run_dir), True
            else:
                if run_dir.exists():  # a failed or never-started attempt with no checkpoint
                    shutil.rmtree(run_dir)
                (step_config, run_dir), resume_step = prepare_step(step, init_from), False
            if socket_path:
                update_record(run_dir, socket=socket_path)
            mirror(
                make_event(
                    "log",
                    level="info",
                    message=f"pipeline {step.pipeline}: step {step.index}/{step.of} "
                    f"{step.stage}{' (resumed)' if resume_step else ''}: {run_dir}",
                )
            )
            if on_step is not None:
                on_step(step, run_dir)
            result = execute(
                step_config,
                run_dir,
                resume=resume_step,
                control=control,
                callbacks=[mirror, *callbacks],
                mode=mode,
                hub_ready=hub_ready,
            )
            done.append((run_dir, result))
            if on_step_end is not None:
                on_step_end(step, run_dir, result)
            if result.status != "finished":
                status = result.status
                break
            init_from = step_output(step, run_dir)
        else:
            status = "finished"
    finally:
        update_record(parent, status=status, ended=time.time())
        mirror.close()
    return done
