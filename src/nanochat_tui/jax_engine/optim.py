"""nanochat's optimizer split and learning-rate schedule, in optax, for both recipes.

Fields left empty in ``optim`` take the run's recipe value (``OptimConfig.resolved()``).

- Muon for every 2-D matrix inside the transformer blocks, at ``optim.matrix_lr``; its momentum
  warms up linearly from ``muon_momentum_start`` to ``muon_momentum`` over
  ``muon_momentum_warmup_steps`` and (2026) ramps to ``muon_momentum_final`` over the lr warmdown,
  driven by the optimizer's own step count so it resumes exactly. With every 2026 Muon switch off
  this is ``optax.contrib.muon`` (Nesterov, 5 Newton–Schulz steps): its state and math, with the
  Newton–Schulz chains of same-shape matrices batched (``optax_muon.py``, equal to optax's within
  float rounding: test), so the compiled step does not grow per matrix with depth; otherwise
  nanochat's current variant from ``muon.py`` (Polar Express, NorMuon, MuonEq/Muon+, cautious
  weight decay ``muon_weight_decay`` decayed by a cosine to zero).
- AdamW for the token embedding (``embedding_lr``), the value embeddings (half of it), the lm head
  (``unembedding_lr``) — all × ``(model_dim / 768) ** -0.5`` — and the scalars: residual lambdas at
  ``scalar_lr × 0.01``, x0 lambdas at ``scalar_lr``, smear/backout at 0.2. Betas and weight decay
  come from ``adam_beta1/2`` and ``weight_decay``, or with ``adamw_per_group`` from nanochat's
  per-group table (:data:`ADAMW_GROUPS`).
- ``batch_lr_scale``: every lr × ``√(total_batch_size / 2^19)`` (nanochat's B_REF), smear excepted.
- Global grad-norm clipping first (``optim.grad_clip``; 0 disables).

The transform is built at PEAK learning rate. Its last stage multiplies every update by the extra
argument ``lr_scale`` (``lr_schedule(step, n, optim) * optim.lr_multiplier``), and the clip stage
reads an optional extra argument ``grad_clip``; both arrive as traced scalars in the jitted step
(see ``step.py``), so changing either at run time never recompiles.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from nanochat_tui.config.schema import Config, ModelConfig, OptimConfig
from nanochat_tui.jax_engine.flops import compute_dtype
from nanochat_tui.jax_engine.model import STACK_KEY
from nanochat_tui.jax_engine.muon import nanochat_muon
from nanochat_tui.jax_engine.optax_muon import grouped_muon_in

EMBEDDING, UNEMBEDDING, MATRIX = "embedding", "unembedding", "matrix"
VALUE_EMBEDS, RESID, X0, SMEAR = "value_embeds", "resid", "x0", "smear"
B_REF = 2**19  # nanochat's reference batch size (tokens) for batch-size lr scaling

# nanochat's per-group AdamW (gpt.py setup_optimizer): group -> (beta1, beta2, weight decay).
ADAMW_GROUPS: dict[str, tuple[float, float, float]] = {
    UNEMBEDDING: (0.8, 0.96, 0.01),
    EMBEDDING: (0.8, 0.995, 0.001),
    VALUE_EMBEDS: (0.8, 0.995, 0.01),
    RESID: (0.8, 0.95, 0.05),
    X0: (0.96, 0.95, 0.0),
    SMEAR: (0.8, 0.95, 0.0),
}
SMEAR_LR = 0.2


def warmup_steps(num_iterations: int, optim_cfg: OptimConfig) -> int:
    """Steps of linear lr warmup: ``warmup_steps + warmup_ratio · n``."""
    o = optim_cfg.resolved()
    return int(o.warmup_steps or 0) + round(o.warmup_ratio * num_iterations)


def lr_schedule(step: int, num_iterations: int, optim_cfg: OptimConfig) -> float:
    """nanochat's lr multiplier: linear warmup, constant, linear warmdown to ``final_lr_frac``."""
    o = optim_cfg.resolved()
    warmup = warmup_steps(num_iterations, o)
    warmdown = round(o.warmdown_ratio * num_iterations)
    if step < warmup:
        return (step + 1) / warmup
    if step <= num_iterations - warmdown:
        return 1.0
    progress = max(0.0, (num_iterations - step) / warmdown)
    return progress + (1.0 - progress) * o.final_lr_frac


def muon_momentum(
    step: int | jax.Array, optim_cfg: OptimConfig, num_iterations: int | None = None
) -> float | jax.Array:
    """nanochat's Muon momentum at ``step``: linear from ``muon_momentum_start`` to
    ``muon_momentum`` over the warmup steps, then (given ``num_iterations``) linear to
    ``muon_momentum_final`` over the lr warmdown."""
    o = optim_cfg.resolved()
    n = o.muon_momentum_warmup_steps
    peak, final = o.muon_momentum, o.muon_momentum_final
    ramp_down = num_iterations is not None and final != peak and o.warmdown_ratio > 0
    if n <= 0 and not ramp_down:
        return peak
    frac = jnp.minimum(step / n, 1.0) if n > 0 else 1.0
    m = (1 - frac) * o.muon_momentum_start + frac * peak
    if ramp_down:
        warmdown = max(1, round(o.warmdown_ratio * num_iterations))
        start = num_iterations - warmdown
        progress = jnp.clip((step - start) / warmdown, 0.0, 1.0)
        m = jnp.where(step < n, m, peak * (1 - progress) + final * progress)
    return m


def muon_weight_decay(
    step: int | jax.Array, optim_cfg: OptimConfig, num_iterations: int
) -> float | jax.Array:
    """nanochat's Muon weight decay: ``muon_weight_decay`` decayed by a half cosine to zero."""
    wd = optim_cfg.resolved().muon_weight_decay
    return wd * 0.5 * (1 + jnp.cos(jnp.pi * jnp.minimum(step / max(num_iterations, 1), 1.0)))


def scaling_params(m: ModelConfig) -> int:
    """nanochat's scaling parameters: the block matrices plus the lm head (base_train.py's
    ``transformer_matrices + lm_head``, the count its horizon and weight decay scale with)."""
    from nanochat_tui.config.estimates import param_counts

    counts = param_counts(m)
    return counts["blocks"] + counts["unembedding"]


def muon_wd_scale(config: Config) -> float:
    """The factor on ``muon_weight_decay`` when ``optim.muon_wd_scaling`` is on (else 1).

    nanochat's base_train keeps ``B/(η·λ·D)`` constant across shapes (T_epoch): with the lr
    already × ``√(B/B_REF)`` that makes ``λ = λ_ref · √(B/B_REF) · D_ref/D``, where ``D`` is the
    token horizon ``ratio × scaling_params`` and ``D_ref`` the same for depth 12 at this model's
    aspect ratio, head size, vocabulary and sequence length (the ratio cancels). Small models and
    small batches get a larger decay: ``tiny`` (d2, 8,192-token steps) ≈ 0.28 × 12.
    """
    if not config.optim.resolved().muon_wd_scaling:
        return 1.0
    m = config.model
    width = -(-12 * m.aspect_ratio // m.head_dim) * m.head_dim  # nudged up to whole heads
    d12 = m.model_copy(update={"depth": 12, "width": width, "blocks": None, "n_kv_head": None})
    batch = math.sqrt(config.train.total_batch_size / B_REF)
    return batch * scaling_params(d12) / scaling_params(m)


def muon_decay(config: Config) -> Callable[[Any], Any]:
    """The Muon weight decay by optimizer step: ``muon_weight_decay`` (scaled when
    ``muon_wd_scaling`` is on) on its half-cosine to zero over the run."""
    from nanochat_tui.config.estimates import num_iterations

    o, n_iter, scale = config.optim.resolved(), num_iterations(config), muon_wd_scale(config)
    return lambda count: muon_weight_decay(count, o, n_iter) * scale


def batch_lr_scale(config: Config) -> float:
    """``√(total_batch_size / 2^19)`` when ``optim.batch_lr_scale`` is on, else 1."""
    if not config.optim.resolved().batch_lr_scale:
        return 1.0
    return math.sqrt(config.train.total_batch_size / B_REF)


def _path_names(path: tuple[Any, ...]) -> list[str]:
    names = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                names.append(str(getattr(key, attr)))
                break
    return names


def param_labels(params: Any, extra: Any = None) -> Any:
    """Label each parameter leaf by optimizer group from its nnx path: ``embedding``,
    ``unembedding``, ``value_embeds``, ``resid``, ``x0``, ``smear`` or ``matrix`` (Muon).
    ``extra(names, leaf)`` (a plugin's ``param_label`` hook) is asked first."""
    top = {
        "wte": EMBEDDING,
        "lm_head": UNEMBEDDING,
        "resid_lambdas": RESID,
        "x0_lambdas": X0,
        "smear_gate": SMEAR,
        "smear_lambda": SMEAR,
        "backout_lambda": SMEAR,
    }

    def label(path: tuple[Any, ...], leaf: jax.Array) -> str:
        names = _path_names(path)
        if extra is not None and (group := extra(names, leaf)) is not None:
            return group
        if names and names[0] in top:
            return top[names[0]]
        if "value_embed" in names:
            return VALUE_EMBEDS
        if names and names[0] == STACK_KEY and leaf.ndim == 3:
            return MATRIX  # a stack of one weight over layers (stacked.py)
        if leaf.ndim != 2:
            raise ValueError(f"parameter {'.'.join(names)} has ndim {leaf.ndim}; Muon expects 2-D")
        return MATRIX

    return jax.tree_util.tree_map_with_path(label, params)


class _ClipState(NamedTuple):
    pass


def clip_by_global_norm_dynamic(default_max_norm: float) -> optax.GradientTransformationExtraArgs:
    """Global-norm clipping whose threshold may arrive as the extra argument ``grad_clip``.

    A threshold ≤ 0 disables clipping. Without the argument, ``default_max_norm`` applies.
    """

    def init_fn(params: Any) -> _ClipState:
        del params
        return _ClipState()

    def update_fn(updates, state, params=None, *, grad_clip=None, **extra):
        del params, extra
        max_norm = jnp.asarray(default_max_norm if grad_clip is None else grad_clip, jnp.float32)
        g_norm = optax.tree.norm(updates)
        scale = jnp.where((max_norm > 0) & (g_norm > max_norm), max_norm / (g_norm + 1e-6), 1.0)
        return jax.tree.map(lambda u: (u * scale).astype(u.dtype), updates), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def scale_by_lr_scale() -> optax.GradientTransformationExtraArgs:
    """Multiply updates by the extra argument ``lr_scale`` (1 when absent)."""

    def init_fn(params: Any) -> _ClipState:
        del params
        return _ClipState()

    def update_fn(updates, state, params=None, *, lr_scale=None, **extra):
        del params, extra
        if lr_scale is None:
            return updates, state
        s = jnp.asarray(lr_scale, jnp.float32)
        return jax.tree.map(lambda u: (u * s).astype(u.dtype), updates), state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


def adamw_lr_scale(model_dim: int) -> float:
    """nanochat scales the AdamW learning rates by ``(model_dim / 768) ** -0.5``."""
    return (model_dim / 768) ** -0.5


def _uses_nanochat_muon(o: OptimConfig) -> bool:
    return bool(
        o.muon_polar_express
        or o.muon_normuon
        or o.muon_renorm
        or o.muon_weight_decay
        or o.muon_momentum_final != o.muon_momentum
    )


def recipe_muon(config: Config) -> optax.GradientTransformation:
    """nanochat's current Muon (muon.py) with the run's recipe switches, lr, momentum and decay
    schedules: the block matrices' optimizer, and a plugin's (MoE experts) for its own matrices."""
    from nanochat_tui.config.estimates import num_iterations

    o, n_iter = config.optim.resolved(), num_iterations(config)
    return nanochat_muon(
        o.matrix_lr * batch_lr_scale(config),
        momentum=lambda count: muon_momentum(count, o, n_iter),
        weight_decay=muon_decay(config),
        polar_express=bool(o.muon_polar_express),
        normuon=bool(o.muon_normuon),
        renorm=bool(o.muon_renorm),
        cautious=bool(o.muon_cautious_wd),
        ns_dtype=compute_dtype(config),
    )


def build_optimizer(
    model: Any, config: Config, hooks: Any = None
) -> optax.GradientTransformationExtraArgs:
    """Muon + AdamW groups + clipping at peak lr; call ``update(..., lr_scale=s, grad_clip=c)``.
    ``hooks`` (jax_engine/hooks.py) may add parameter groups with transforms of their own."""
    del model  # labels come from the parameter paths at init time
    o = config.optim.resolved()
    ns_dtype = compute_dtype(config)  # Newton–Schulz in bf16 where the model computes in bf16
    scale = adamw_lr_scale(config.model.model_dim)
    bscale = batch_lr_scale(config)

    def adamw(lr: float, group: str) -> optax.GradientTransformation:
        b1, b2, wd = (
            ADAMW_GROUPS[group]
            if o.adamw_per_group
            else (o.adam_beta1, o.adam_beta2, o.weight_decay)
        )
        return optax.adamw(lr, b1=b1, b2=b2, eps=1e-10, weight_decay=wd)

    if _uses_nanochat_muon(o):
        muon = recipe_muon(config)
    else:
        muon = optax.inject_hyperparams(
            grouped_muon_in(ns_dtype), static_args=("nesterov", "ns_steps")
        )(
            learning_rate=o.matrix_lr * bscale,
            beta=lambda count: muon_momentum(count, o),
            nesterov=True,
        )
    embedding_lr = o.embedding_lr * scale * bscale
    extra = dict((label, factory(config)) for label, factory in hooks.transforms) if hooks else {}
    labels = param_labels
    if hooks is not None and hooks.param_label is not None:
        labels = functools.partial(param_labels, extra=hooks.param_label)
    split = optax.multi_transform(
        {
            **extra,
            EMBEDDING: adamw(embedding_lr, EMBEDDING),
            UNEMBEDDING: adamw(o.unembedding_lr * scale * bscale, UNEMBEDDING),
            VALUE_EMBEDS: adamw(embedding_lr * 0.5, VALUE_EMBEDS),
            RESID: adamw(o.scalar_lr * bscale * 0.01, RESID),
            X0: adamw(o.scalar_lr * bscale, X0),
            SMEAR: adamw(SMEAR_LR, SMEAR),
            MATRIX: muon,
        },
        labels,
    )
    return optax.chain(clip_by_global_norm_dynamic(o.grad_clip), split, scale_by_lr_scale())
