"""Divergence: a NaN/inf loss, or one that stays far above its running minimum. Pure Python.

A NaN/inf loss ends a run at once (loop.py) with a message naming the likely cause. A loss that explodes without becoming NaN (every lr at
its maximum: ~2e5 for dozens of steps) would otherwise end "finished". ``DivergenceWatch`` flags it
when the smoothed loss exceeds ``factor`` × the lowest smoothed loss seen so far for ``steps``
consecutive steps. Smoothing (a debiased EMA, β = 0.9, as nanochat logs its loss) keeps one lucky
small batch from setting a "best" that the healthy run then seems to diverge from.

The smoothed loss crosses the threshold steps after the raw loss did (a blow-up at step 72 was
flagged at 97), so the watch also keeps ``first_bad``: the first step whose raw loss went over,
held until the loss has been back under for ``steps`` steps. While it is set, rotation keeps the
newest checkpoint from before it (``Checkpointer.hold_before``), and a stop names that checkpoint
and sets aside the ones saved after it, so a plain ``--resume`` (with a lower lr) continues from it.
"""

from __future__ import annotations

import math
import shlex
import time
from collections.abc import Sequence
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
        self.first_bad: int | None = None  # first step whose raw loss went over the threshold
        self._calm = 0  # steps since, with the raw and smoothed losses back under it
        self._reported = False
        self._ema = 0.0
        self._n = 0

    def update(self, step: int, loss: float) -> bool:
        self._n += 1
        self._ema = self.BETA * self._ema + (1 - self.BETA) * loss
        smoothed = self._ema / (1 - self.BETA**self._n)
        threshold = self.best * self.factor
        if loss > threshold:
            self._calm = 0
            if self.first_bad is None:
                self.first_bad = step
        elif self.first_bad is not None and smoothed <= threshold:
            self._calm += 1
            if self._calm >= self.steps:
                self.first_bad = None
        if smoothed <= threshold or not math.isfinite(self.best):
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
    run: RunState, step: int, loss: float, resumed_from: int | None, primary: bool = True
) -> TrainResult:
    """The failed result (and its events) for a NaN/inf loss, naming the likely causes."""
    last = good_checkpoint(run, step)
    aside = set_aside_after(run, last) if primary and last is not None else []
    msg = f"training diverged: loss became {loss} at step {step}; {_where(last, aside, step)}"
    bad = nonfinite_settings(run.config)
    if bad:
        fix = (
            f"the config has non-finite values ({', '.join(bad)}): set finite ones, then start "
            "again"
        )
    elif step == (resumed_from or 0) + 1:
        fix = (
            "the first step's loss comes before any update, so the learning rate is not the "
            "cause: check model.* settings (softcap, rope_base) and the data, then start again"
        )
    else:
        fix = "lower the learning rate and keep optim.grad_clip > 0, " + restart_hint(run, last)
    run.emit(
        "error", message=msg, remediation=fix, kind="nan", last_checkpoint=_str(last), step=step
    )
    run.emit("run_end", step=step, status="failed", final_val_bpb=run.val_bpb)
    return TrainResult("failed", step, run.val_bpb, last, f"{msg}\n  → {fix}")


def diverged_result(
    run: RunState, watch: DivergenceWatch, step: int, loss: float, primary: bool = True
) -> TrainResult:
    """The failed result (and its events) for a stop on divergence (train.on_divergence=stop):
    the checkpoints saved since the loss first went over are set aside, so the newest one from
    before it is the run's latest and the remediation's ``--resume`` line continues from it."""
    good = good_checkpoint(run, first_bad(watch, step))
    aside = set_aside_after(run, good) if primary and good is not None else []
    message, fix = divergence_message(run, watch, step, loss, aside)
    run.emit(
        "error", message=message, remediation=fix, kind="diverged",
        last_checkpoint=_str(good), step=step,
    )  # fmt: skip
    run.emit("run_end", step=step, status="failed", final_val_bpb=run.val_bpb)
    return TrainResult("failed", step, run.val_bpb, good, f"{message}\n  → {fix}")


def first_bad(watch: DivergenceWatch, step: int) -> int:
    """The first step of the divergence: the raw loss's crossing, else the smoothed one's."""
    return watch.first_bad or watch.streak_start or step


def good_checkpoint(run: RunState, first_bad: int) -> Path | None:
    """The newest committed checkpoint (pinned or not) whose weights predate the first bad loss:
    step k's loss is computed with the weights saved at step k-1, so those are suspect too."""
    before = [c for c in rundir.list_checkpoints(run.run_dir) if c.step < first_bad - 1]
    return before[-1].path if before else None


def set_aside_after(run: RunState, good: Path) -> list[int]:
    """Rename the checkpoints saved after ``good`` (their weights are suspect) to
    ``<step>.diverged-<time>`` and unpin them; nothing is deleted. Returns their steps."""
    stamp = int(time.time())
    moved = []
    for info in rundir.list_checkpoints(run.run_dir):
        if info.step > int(good.name):
            info.path.rename(info.path.with_name(f"{info.path.name}.diverged-{stamp}"))
            if info.pinned:
                rundir.set_pinned(run.run_dir, info.step, False)
            moved.append(info.step)
    return moved


def _where(good: Path | None, aside: list[int], first_bad: int) -> str:
    if good is None:
        return f"no checkpoint was saved before step {first_bad - 1}"
    where = f"last good checkpoint: {good}"
    if aside:
        steps = ", ".join(str(s) for s in aside)
        where += f"; the ones saved since ({steps}) are set aside as <step>.diverged-<time>"
    return where


def safer_settings(run: RunState, good: Path | None) -> list[str]:
    """``key=value`` for going on: half the lowest lr multiplier in effect since ``good`` was
    saved (a patch may have raised it), and the grad clip back on when it is off."""
    o = run.config.optim
    saved = (rundir.read_meta(good) or {}) if good is not None else {}
    before = (saved.get("config") or {}).get("optim", {}).get("lr_multiplier")
    lowest = min(o.lr_multiplier, before) if isinstance(before, int | float) else o.lr_multiplier
    settings = [f"optim.lr_multiplier={lowest / 2:.3g}"]
    if o.grad_clip == 0:
        settings.append("optim.grad_clip=1")
    return settings


def restart_hint(run: RunState, good: Path | None) -> str:
    """How to go on from ``good`` with safer settings: the exact ``--resume`` line when it is the
    run's newest checkpoint, else its weights in a new run; without one, start again."""
    settings = safer_settings(run, good)
    if good is None:
        return f"then start again with {', '.join(settings)}"
    sets = " ".join(f"--set {s}" for s in settings)
    latest = rundir.latest_checkpoint(run.run_dir)
    if latest is not None and latest.path == good:
        run_dir = shlex.quote(str(run.run_dir))
        return f"then resume from it: `nanochat-tui run --resume {run_dir} {sets}`"
    return f"then start from its weights: `--set run.init_from={shlex.quote(str(good))} {sets}`"


def divergence_message(
    run: RunState, watch: DivergenceWatch, step: int, loss: float, aside: Sequence[int] = ()
) -> tuple[str, str]:
    """(message, remediation) for a divergence the watch flagged at ``step``."""
    bad = first_bad(watch, step)
    good = good_checkpoint(run, bad)
    message = (
        f"training diverged: loss {loss:.4g} at step {step} has stayed above "
        f"{watch.factor:g}× its best smoothed loss ({watch.best:.4g}) for {watch.streak} steps; "
        f"it first went over at step {bad}; {_where(good, list(aside), bad)}"
    )
    fix = (
        "lower the learning rate (optim.lr_multiplier, or optim.matrix_lr / embedding_lr) and "
        "keep optim.grad_clip > 0, " + restart_hint(run, good)
    )
    fix += (
        "; train.divergence_factor / train.divergence_steps tune the check, "
        "train.on_divergence=warn|off relaxes it"
    )
    return message, fix
