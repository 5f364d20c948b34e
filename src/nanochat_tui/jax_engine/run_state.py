"""A training run's state as the loop and its helpers share it, and the result it ends with."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanochat_tui import rundir
from nanochat_tui.config.schema import Config
from nanochat_tui.telemetry.events import make_event


@dataclass
class TrainResult:
    status: str  # "finished" | "stopped" | "failed"
    step: int
    final_val_bpb: float | None
    last_checkpoint: Path | None
    error: str | None = None  # the user-facing message when status is "failed"
    unigram_bpb: float | None = None  # baseline on the same val targets
    metrics: dict[str, float] = field(default_factory=dict)  # the stage's headline metrics


@dataclass
class RunState:
    """What the loop knows about its run, kept apart so the loop body stays readable."""

    config: Config
    run_dir: Path
    on_event: Callable[[dict], None]
    step: int = 0
    last_checkpoint: Path | None = None
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {value, step}
    aux_time: float = 0.0  # seconds spent in evals, samples and saves
    started: float = field(default_factory=time.perf_counter)
    held: list[dict] | None = None  # events held back while a resume may still be refused
    hooks: Any = None  # jax_engine.hooks.EngineHooks from plugins (via the orchestrator)
    headline: tuple[str, ...] = ("val_bpb",)  # the task's headline metric names (Task.headline)

    @property
    def run_name(self) -> str:
        return self.config.run.name or self.run_dir.name

    @property
    def val_bpb(self) -> float | None:
        return self.metrics.get("val_bpb", {}).get("value")

    def headline_metrics(self) -> dict[str, float]:
        """The task's headline metrics that have a value, by name (``run_end``, ``TrainResult``)."""
        out = {}
        for name in self.headline:
            value = self.metrics.get(name, {}).get("value")
            if value is not None:
                out[name] = float(value)
        return out

    def emit(self, type_: str, **fields: Any) -> None:
        event = make_event(type_, **fields)
        if self.held is not None:
            self.held.append(event)
        else:
            self.on_event(event)

    def release(self) -> None:
        held, self.held = self.held or [], None
        for event in held:
            self.on_event(event)

    def log(self, message: str, level: str = "info") -> None:
        self.emit("log", level=level, message=message, step=self.step)

    def phase(self, name: str, detail: str = "") -> None:
        elapsed = round(time.perf_counter() - self.started, 3)
        self.emit("phase", phase=name, elapsed_s=elapsed, detail=detail, step=self.step)


class Halt(Exception):
    """Ends the loop with a failed result (non-finite loss, divergence): not a crash."""

    def __init__(self, result: TrainResult) -> None:
        super().__init__(result.error)
        self.result = result


def write_run_config(run_dir: Path, config: Config) -> None:
    from nanochat_tui.config.loader import to_yaml

    rundir.write_atomic(Path(run_dir) / rundir.CONFIG, to_yaml(config))
