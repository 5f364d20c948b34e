"""ORPO: SFT on the chosen reply plus an odds-ratio preference term, with no reference model.

With per-token (length-averaged) log-probs ``a_c``, ``a_r`` of chosen and rejected and
``odds(a) = a − log(1 − e^a)`` (log of p/(1−p)), the per-pair loss is

    −a_c − λ·log σ(odds(a_c) − odds(a_r))            λ = pref.orpo_lambda

the first term being the chosen reply's mean token NLL (TRL averages it over the batch's tokens;
here over each pair's). Metrics as TRL's ORPOTrainer: ``rewards/*`` = λ·a, ``logps/*`` = a,
``nll_loss``, ``log_odds_ratio`` (the log σ term) and ``log_odds_chosen`` (the odds difference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from nanochat_tui.jax_engine.tasks.preference import (
    PairLoss,
    PairStats,
    PreferenceTask,
    mean_logps,
    reward_metrics,
)


def log_odds(a: Any) -> Any:
    """``log(p / (1 − p))`` for ``a = log p`` (p kept just below 1, where the odds are infinite)."""
    a = jnp.minimum(a, -1e-6)
    return a - jnp.log(-jnp.expm1(a))


@dataclass(frozen=True)
class ORPOLoss(PairLoss):
    orpo_lambda: float = 0.1

    def terms(self, s: PairStats) -> tuple[Any, dict[str, Any]]:
        ac, ar = mean_logps(s)
        odds = log_odds(ac) - log_odds(ar)
        ratio = jax.nn.log_sigmoid(odds)
        nll = -ac
        losses = nll - self.orpo_lambda * ratio
        metrics = reward_metrics(self.orpo_lambda * ac, self.orpo_lambda * ar)
        metrics["logps/chosen"], metrics["logps/rejected"] = ac, ar
        metrics["nll_loss"], metrics["log_odds_ratio"], metrics["log_odds_chosen"] = (
            nll,
            ratio,
            odds,
        )
        return losses, metrics


class ORPOTask(PreferenceTask):
    """Odds-ratio preference optimization (reference-free)."""

    stage = "orpo"
    loss = ORPOLoss()

    @classmethod
    def make_loss(cls, pref: Any) -> ORPOLoss:
        return ORPOLoss(pref.orpo_lambda)
