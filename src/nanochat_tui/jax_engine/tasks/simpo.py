"""SimPO: length-normalised implicit rewards with a target margin, and no reference model.

With per-token (length-averaged) log-probs ``a_c``, ``a_r``, β = ``pref.beta``, γ =
``pref.simpo_gamma`` and ε = ``pref.label_smoothing``, the per-pair loss is

    −(1−ε)·log σ(β(a_c − a_r) − γ) − ε·log σ(−(β(a_c − a_r) − γ))

(TRL's CPOTrainer with ``loss_type="simpo"``). Metrics: ``rewards/*`` = β·a, ``logps/*`` = a.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax

from nanochat_tui.jax_engine.tasks.preference import (
    PairLoss,
    PairStats,
    PreferenceTask,
    mean_logps,
    reward_metrics,
)


@dataclass(frozen=True)
class SimPOLoss(PairLoss):
    beta: float = 2.0
    gamma: float = 0.5
    label_smoothing: float = 0.0

    def terms(self, s: PairStats) -> tuple[Any, dict[str, Any]]:
        ac, ar = mean_logps(s)
        z = self.beta * (ac - ar) - self.gamma
        e = self.label_smoothing
        losses = -(1 - e) * jax.nn.log_sigmoid(z) - e * jax.nn.log_sigmoid(-z)
        metrics = reward_metrics(self.beta * ac, self.beta * ar)
        metrics["logps/chosen"], metrics["logps/rejected"] = ac, ar
        return losses, metrics


class SimPOTask(PreferenceTask):
    """Simple preference optimization (reference-free, length-normalised, margin γ)."""

    stage = "simpo"
    loss = SimPOLoss()

    @classmethod
    def make_loss(cls, pref: Any) -> SimPOLoss:
        return SimPOLoss(pref.beta, pref.simpo_gamma, pref.label_smoothing)
