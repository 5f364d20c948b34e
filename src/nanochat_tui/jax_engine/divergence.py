"""Divergence: a loss that stays far above its running minimum, though finite. Pure Python.

A NaN/inf loss ends a run at once (loop.py). A loss that explodes without becoming NaN (every lr at
its maximum: ~2e5 for dozens of steps) would otherwise end "finished". ``DivergenceWatch`` flags it
when the loss exceeds ``factor`` × the lowest loss seen so far for ``steps`` consecutive steps.
"""

from __future__ import annotations

import math


class DivergenceWatch:
    """Feed every step's loss to ``update``; it returns True once per divergent streak."""

    def __init__(self, factor: float, steps: int) -> None:
        self.factor = factor
        self.steps = steps
        self.best = math.inf
        self.streak = 0
        self.streak_start: int | None = None  # first step of the current streak
        self._reported = False

    def update(self, step: int, loss: float) -> bool:
        if loss <= self.best * self.factor or not math.isfinite(self.best):
            self.best = min(self.best, loss)
            self.streak, self.streak_start, self._reported = 0, None, False
            return False
        if self.streak == 0:
            self.streak_start = step
        self.streak += 1
        if self.streak >= self.steps and not self._reported:
            self._reported = True
            return True
        return False
