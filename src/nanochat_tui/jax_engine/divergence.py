"""Divergence: a NaN/inf loss, or one that stays far above its running minimum. Pure Python.

A NaN/inf loss ends a run at once (loop.py) with a message naming the likely cause. A loss that explodes without becoming NaN (every lr at
its maximum: ~2e5 for dozens of steps) would otherwise end "finished". ``DivergenceWatch`` flags it
when the smoothed loss exceeds ``factor`` × the lowest smoothed loss seen so far for ``steps``
consecutive steps. Smoothing (a debiased EMA, β = 0.9, as nanochat logs its loss) keeps one lucky
small batch from setting a "best" that the healthy run then seems to diverge from.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from nanochat_tui import rundir
from nanochat_tui.config.schema import Config
from nanochat_tui.jax_engine.run_state import RunState, TrainResult


class DivergenceWatch:
    """Feed every step's loss to ``update``; it returns True once per divergent streak."""

    BETA = 0.9

    def __init__(self, factor: float, steps: int) -> None:
        self.factor = factor
        self.steps = steps
        self.best = math.inf  # lowest smoothed loss so far
        self.streak = 0
        self.streak_start: int | None = None  # first step of the current streak
        self._reported = False
        self._ema = 0.0
        self._n = 0

    def update(self, step: int, loss: float) -> bool:
        self._n += 1
        self._ema = self.BETA * self._ema + (1 - self.BETA) * loss
        smoothed = self._ema / (1 - self.BETA**self._n)
        if smoothed <= self.best * self.factor or not math.isfinite(self.best):
            self.best = min(self.best, smoothed)
            self.streak, self.streak_start, self._reported = 0, None, False
            return False
        if self.streak == 0:
            self.streak_start = step
        self.streak += 1
        if self.streak >= self.steps and not self._reported:
            self._reported = True
            return True
        return False


def _str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def nonfinite_settings(config: Config) -> list[str]:
    """``section.field=value`` for every non-finite number in the config (inf, nan)."""
    found = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else str(k), v)
        elif isinstance(value, float) and not math.isfinite(value):
            found.append(f"{prefix}={value}")

    walk("", config.model_dump())
    return found


def nonfinite_result(
    run: RunState, step: int, loss: float, resumed_from: int | None
) -> TrainResult:
    """The failed result (and its events) for a NaN/inf loss, naming the likely causes."""
    last = good_checkpoint(run, step)
    where = f"last good checkpoint: {last}" if last else "no checkpoint was saved before it"
    msg = f"training diverged: loss became {loss} at step {step}; {where}"
    bad = nonfinite_settings(run.config)
    then = restart_hint(run, last)
    if bad:
        fix = f"the config has non-finite values ({', '.join(bad)}): set finite ones, {then}"
    elif step == (resumed_from or 0) + 1:
        fix = (
            "the first step's loss comes before any update, so the learning rate is not the "
            "cause: check model.* settings (softcap, rope_base) and the data, " + then
        )
    else:
        fix = (
            "lower optim.lr_multiplier (or optim.matrix_lr / embedding_lr), keep optim.grad_clip "
            "> 0, " + then
        )
    run.emit(
        "error", message=msg, remediation=fix, kind="nan", last_checkpoint=_str(last), step=step
    )
    run.emit("run_end", step=step, status="failed", final_val_bpb=run.val_bpb)
    return TrainResult("failed", step, run.val_bpb, last, f"{msg}\n  → {fix}")


def good_checkpoint(run: RunState, first_bad: int) -> Path | None:
    """The newest committed checkpoint whose weights predate the first bad loss: step k's loss is
    computed with the weights saved at step k-1, so those are suspect too."""
    before = [c for c in rundir.list_checkpoints(run.run_dir) if c.step < first_bad - 1]
    return before[-1].path if before else None


def restart_hint(run: RunState, good: Path | None) -> str:
    """How to go on from ``good``: resume when it is the run's newest checkpoint, else its weights."""
    if good is None:
        return "then start again"
    latest = rundir.latest_checkpoint(run.run_dir)
    if latest is not None and latest.path == good:
        return f"then `nanochat-tui run --resume {run.run_dir}`"
    return f"then start from its weights: `--set run.init_from={good}`"


def divergence_message(run: RunState, watch, step: int, loss: float) -> tuple[str, str]:
    good = good_checkpoint(run, watch.streak_start or step)
    where = f"last good checkpoint: {good}" if good else "no checkpoint was saved before it"
    message = (
        f"training diverged: loss {loss:.4g} at step {step} has stayed above "
        f"{watch.factor:g}× its best smoothed loss ({watch.best:.4g}) for {watch.streak} steps since step "
        f"{watch.streak_start}; {where}"
    )
    fix = (
        "lower optim.lr_multiplier (or optim.matrix_lr / embedding_lr), keep optim.grad_clip > 0, "
        + restart_hint(run, good)
    )
    fix += (
        "; train.divergence_factor / train.divergence_steps tune the check, "
        "train.on_divergence=warn|off relaxes it"
    )
    return message, fix
