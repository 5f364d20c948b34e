"""Preference losses against a straightforward NumPy computation on a fixed batch: DPO for each
loss_type (and label smoothing), ORPO, SimPO; every metric; gradients vanish as β → 0."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nanochat_tui.config.schema import ModelConfig
from nanochat_tui.jax_engine.model import GPT
from nanochat_tui.jax_engine.tasks.dpo import DPOLoss
from nanochat_tui.jax_engine.tasks.orpo import ORPOLoss
from nanochat_tui.jax_engine.tasks.simpo import SimPOLoss

B, T, V = 3, 16, 300


@pytest.fixture(scope="module")
def model() -> GPT:
    cfg = ModelConfig(depth=1, aspect_ratio=64, head_dim=32, sequence_len=T, vocab_size=V)
    m = GPT(cfg, rngs=nnx.Rngs(0))
    head = m.lm_head.kernel
    head[...] = 0.5 * jax.random.normal(jax.random.key(1), head[...].shape)
    return m


@pytest.fixture(scope="module")
def batch(model):
    rng = np.random.default_rng(0)
    x = {s: rng.integers(0, V, (B, T)).astype(np.int32) for s in ("chosen", "rejected")}
    y = {}
    for s, start in (("chosen", 5), ("rejected", 7)):
        targets = rng.integers(0, V, (B, T)).astype(np.int32)
        targets[:, :start] = -1  # the prompt
        targets[1, -3:] = -1  # a shorter reply (padding)
        y[s] = targets
    st = numpy_stats(model, x, y)  # references near the policy, so pairs land on both sides
    y["ref_chosen"] = (st["chosen"]["logp"] + [-1.0, 1.5, -0.5]).astype(np.float32)
    y["ref_rejected"] = (st["rejected"]["logp"] + [1.0, -1.0, 0.25]).astype(np.float32)
    return x, y, st


def numpy_stats(model, x, y):
    """Per-sequence summed log-probs, token counts and mean logits from the full logits."""
    out = {}
    for s in ("chosen", "rejected"):
        logits = np.asarray(model(jnp.asarray(x[s])), np.float64)
        logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) - logits.max(-1, keepdims=True)  # fmt: skip
        t = y[s]
        valid = t >= 0
        tok = np.take_along_axis(logp, np.maximum(t, 0)[..., None], -1)[..., 0]
        out[s] = {
            "logp": (tok * valid).sum(1),
            "n": valid.sum(1).astype(np.float64),
            "logit_mean": (logits.mean(-1) * valid).sum() / valid.sum(),
        }
    return out


def logsig(z):
    return -np.logaddexp(0.0, -z)


def ours(loss, model, x, y):
    total, count, aux = loss(model, jax.tree.map(jnp.asarray, x), jax.tree.map(jnp.asarray, y))
    return float(total) / float(count), {k: float(v) / float(count) for k, v in aux.items()}


def check(got, want_loss, want_metrics):
    loss, aux = got
    np.testing.assert_allclose(loss, want_loss, rtol=2e-5, atol=1e-6)
    assert set(aux) == set(want_metrics)
    for name, value in want_metrics.items():
        np.testing.assert_allclose(aux[name], value, rtol=2e-5, atol=1e-5, err_msg=name)


@pytest.mark.parametrize(
    ("loss_type", "smoothing"),
    [("sigmoid", 0.0), ("sigmoid", 0.2), ("robust", 0.2), ("hinge", 0.0), ("ipo", 0.0)],
)
def test_dpo_loss_and_metrics_match_numpy(model, batch, loss_type, smoothing) -> None:
    x, y, st = batch
    beta = 0.3
    pc, pr = st["chosen"]["logp"], st["rejected"]["logp"]
    rc, rr = y["ref_chosen"].astype(np.float64), y["ref_rejected"].astype(np.float64)
    if loss_type == "ipo":  # length-averaged, as TRL
        pc, pr = pc / st["chosen"]["n"], pr / st["rejected"]["n"]
        rc, rr = rc / st["chosen"]["n"], rr / st["rejected"]["n"]
    h = (pc - pr) - (rc - rr)
    e = smoothing
    losses = {
        "sigmoid": -(1 - e) * logsig(beta * h) - e * logsig(-beta * h),
        "robust": (-(1 - e) * logsig(beta * h) + e * logsig(-beta * h)) / (1 - 2 * e),
        "hinge": np.maximum(0.0, 1 - beta * h),
        "ipo": (h - 1 / (2 * beta)) ** 2,
    }[loss_type]
    chosen, rejected = beta * (pc - rc), beta * (pr - rr)
    metrics = {
        "rewards/chosen": chosen.mean(),
        "rewards/rejected": rejected.mean(),
        "rewards/margins": (chosen - rejected).mean(),
        "rewards/accuracies": (chosen > rejected).mean(),
        "logps/chosen": pc.mean(),
        "logps/rejected": pr.mean(),
        "logits/chosen": st["chosen"]["logit_mean"],
        "logits/rejected": st["rejected"]["logit_mean"],
    }
    assert 0 < metrics["rewards/accuracies"] < 1  # the fixed batch has both kinds of pairs
    check(ours(DPOLoss(beta, loss_type, smoothing), model, x, y), losses.mean(), metrics)


def test_orpo_loss_and_metrics_match_numpy(model, batch) -> None:
    x, y, st = batch
    lam = 0.25
    ac = st["chosen"]["logp"] / st["chosen"]["n"]
    ar = st["rejected"]["logp"] / st["rejected"]["n"]
    odds = (ac - np.log1p(-np.exp(ac))) - (ar - np.log1p(-np.exp(ar)))
    ratio = logsig(odds)
    losses = -ac - lam * ratio
    metrics = {
        "rewards/chosen": (lam * ac).mean(),
        "rewards/rejected": (lam * ar).mean(),
        "rewards/margins": (lam * (ac - ar)).mean(),
        "rewards/accuracies": (ac > ar).mean(),
        "logps/chosen": ac.mean(),
        "logps/rejected": ar.mean(),
        "logits/chosen": st["chosen"]["logit_mean"],
        "logits/rejected": st["rejected"]["logit_mean"],
        "nll_loss": (-ac).mean(),
        "log_odds_ratio": ratio.mean(),
        "log_odds_chosen": odds.mean(),
    }
    check(ours(ORPOLoss(lam), model, x, y), losses.mean(), metrics)


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_simpo_loss_and_metrics_match_numpy(model, batch, smoothing) -> None:
    x, y, st = batch
    beta, gamma = 2.0, 0.7
    ac = st["chosen"]["logp"] / st["chosen"]["n"]
    ar = st["rejected"]["logp"] / st["rejected"]["n"]
    z = beta * (ac - ar) - gamma
    losses = -(1 - smoothing) * logsig(z) - smoothing * logsig(-z)
    metrics = {
        "rewards/chosen": (beta * ac).mean(),
        "rewards/rejected": (beta * ar).mean(),
        "rewards/margins": (beta * (ac - ar)).mean(),
        "rewards/accuracies": (ac > ar).mean(),
        "logps/chosen": ac.mean(),
        "logps/rejected": ar.mean(),
        "logits/chosen": st["chosen"]["logit_mean"],
        "logits/rejected": st["rejected"]["logit_mean"],
    }
    check(ours(SimPOLoss(beta, gamma, smoothing), model, x, y), losses.mean(), metrics)


def _grad_norm(loss, model, x, y) -> float:
    xj, yj = jax.tree.map(jnp.asarray, x), jax.tree.map(jnp.asarray, y)
    grads = nnx.grad(lambda m: loss(m, xj, yj)[0])(model)
    return float(jnp.sqrt(sum(jnp.sum(g.astype(jnp.float32) ** 2) for g in jax.tree.leaves(grads))))


@pytest.mark.parametrize(
    "make",
    [
        lambda b: DPOLoss(b, "sigmoid", 0.0),
        lambda b: DPOLoss(b, "sigmoid", 0.2),
        lambda b: DPOLoss(b, "robust", 0.2),
        lambda b: DPOLoss(b, "hinge", 0.0),
        lambda b: SimPOLoss(b, 0.0, 0.0),
    ],
)
def test_gradients_vanish_as_beta_goes_to_zero(model, batch, make) -> None:
    x, y, _ = batch
    full = _grad_norm(make(1.0), model, x, y)
    tiny = _grad_norm(make(1e-7), model, x, y)
    assert full > 1e-3 and tiny < 1e-6 * full, (full, tiny)
