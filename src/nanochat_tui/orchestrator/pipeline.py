"""Pipelines: a prefab's ``pipeline:`` steps run in order, each from the previous step's weights.

Each step is an ordinary run in a sibling directory ``<name>.<i>-<step name>`` (so the Runs,
Checkpoints, Chat and Evals panes see it like any run), configured as the prefab with the
pipeline removed, ``train.stage`` set to the step's stage, then the step's own ``set`` overrides.
A step after the first starts from the previous step's last checkpoint (``run.init_from`` = that
step directory: the lineage in the child's config.yaml). Every step's run.json records
``pipeline = {"name", "index", "of", "stage", "parent"}``. A failed or stopped step ends the
pipeline; each step can be resumed on its own (``run --resume STEP_DIR``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanochat_tui import rundir
from nanochat_tui.config import apply_overrides
from nanochat_tui.config.loader import ConfigError
from nanochat_tui.config.schema import Config
from nanochat_tui.errors import UserError
from nanochat_tui.orchestrator.records import update_record
from nanochat_tui.orchestrator.runner import (
    default_run_name,
    execute,
    resolve_run_dir,
    run_dir_for,
)


@dataclass
class StepPlan:
    index: int  # 1-based
    of: int
    pipeline: str  # the pipeline's name (the base of every step's run name)
    name: str  # the step's run name
    stage: str
    config: Config  # without pipeline; run.init_from is set when the step starts


def plan(config: Config, name: str | None = None) -> list[StepPlan]:
    """The steps of ``config.pipeline`` with their run names and validated configs. Refuses
    a step whose overrides are invalid or whose run directory exists, before anything runs."""
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
        run_name = f"{base}.{i}-{step.name or step.stage}"
        run_dir = run_dir_for(step_config, run_name)
        if run_dir.exists() and any(run_dir.iterdir()):
            raise UserError(
                f"run directory {run_dir} already exists",
                "pick another run name (--name); resume a step with `run --resume STEP_DIR`",
            )
        steps.append(StepPlan(i, len(config.pipeline), base, run_name, step.stage, step_config))
    return steps


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


def run_pipeline(
    config: Config,
    name: str | None = None,
    *,
    control_for: Callable[[StepPlan], Any] | None = None,
    callbacks: Iterable[Callable[[dict], None]] = (),
    on_step: Callable[[StepPlan, Path], None] | None = None,
    mode: str = "headless",
) -> list[tuple[Path, Any]]:
    """Run every step in this thread; returns ``(run_dir, TrainResult)`` per step run. Stops
    after a step that did not finish."""
    done: list[tuple[Path, Any]] = []
    parent: str | None = config.run.init_from
    for step in plan(config, name):
        step_config, run_dir = prepare_step(step, parent)
        if on_step is not None:
            on_step(step, run_dir)
        control = control_for(step) if control_for is not None else None
        result = execute(
            step_config, run_dir, control=control, callbacks=list(callbacks), mode=mode
        )
        done.append((run_dir, result))
        if result.status != "finished":
            break
        parent = step_output(step, run_dir)
    return done
