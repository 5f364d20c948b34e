"""nanochat's optimizer split and learning-rate schedule, in optax.

- Muon (``optax.contrib.muon``, Nesterov, 5 Newton–Schulz steps) for every 2-D matrix inside the
  transformer blocks, at ``optim.matrix_lr``; its momentum warms up linearly from
  ``optim.muon_momentum_start`` to ``optim.muon_momentum`` over ``optim.muon_momentum_warmup_steps``
  (nanochat: 0.85 → 0.95 over 300 steps), driven by the optimizer's own step count so it resumes
  exactly.
- AdamW for the token embedding (``optim.embedding_lr``) and the lm head (``optim.unembedding_lr``),
  both scaled by ``(model_dim / 768) ** -0.5`` as in nanochat; betas / weight decay from config.
- Global grad-norm clipping first (``optim.grad_clip``; 0 disables).

The transform is built at PEAK learning rate. Its last stage multiplies every update by the extra
argument ``lr_scale`` (``lr_schedule(step, n, optim) * optim.lr_multiplier``), and the clip stage
reads an optional extra argument ``grad_clip``; both arrive as traced scalars in the jitted step
(see ``step.py``), so changing either at run time never recompiles.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from nanochat_tui.config.schema import Config, OptimConfig

EMBEDDING, UNEMBEDDING, MATRIX = "embedding", "unembedding", "matrix"


def lr_schedule(step: int, num_iterations: int, optim_cfg: OptimConfig) -> float:
    """nanochat's lr multiplier: linear warmup, constant, linear warmdown to ``final_lr_frac``."""
    warmup = round(optim_cfg.warmup_ratio * num_iterations)
    warmdown = round(optim_cfg.warmdown_ratio * num_iterations)
    if step < warmup:
        return (step + 1) / warmup
    if step <= num_iterations - warmdown:
        return 1.0
    progress = max(0.0, (num_iterations - step) / warmdown)
    return progress + (1.0 - progress) * optim_cfg.final_lr_frac


def muon_momentum(step: int | jax.Array, optim_cfg: OptimConfig) -> float | jax.Array:
    """nanochat's Muon momentum at ``step``: linear from ``muon_momentum_start`` to ``muon_momentum``."""
    n = optim_cfg.muon_momentum_warmup_steps
    if n <= 0:
        return optim_cfg.muon_momentum
    frac = jnp.minimum(step / n, 1.0)
    return (1 - frac) * optim_cfg.muon_momentum_start + frac * optim_cfg.muon_momentum


def _path_names(path: tuple[Any, ...]) -> list[str]:
    names = []
    for key in path:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                names.append(str(getattr(key, attr)))
                break
    return names


def param_labels(params: Any) -> Any:
    """Label each parameter leaf ``embedding`` / ``unembedding`` / ``matrix`` by its nnx path."""

    def label(path: tuple[Any, ...], leaf: jax.Array) -> str:
        names = _path_names(path)
        if names and names[0] == "wte":
            return EMBEDDING
        if names and names[0] == "lm_head":
            return UNEMBEDDING
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


def build_optimizer(model: Any, config: Config) -> optax.GradientTransformationExtraArgs:
    """Muon + AdamW + clipping at peak lr; call ``update(..., lr_scale=s, grad_clip=c)``."""
    del model  # labels come from the parameter paths at init time
    o = config.optim
    scale = adamw_lr_scale(config.model.model_dim)

    def adamw(lr: float) -> optax.GradientTransformation:
        return optax.adamw(
            lr, b1=o.adam_beta1, b2=o.adam_beta2, eps=1e-10, weight_decay=o.weight_decay
        )

    muon = optax.inject_hyperparams(optax.contrib.muon, static_args=("nesterov", "ns_steps"))(
        learning_rate=o.matrix_lr, beta=lambda count: muon_momentum(count, o), nesterov=True
    )
    split = optax.multi_transform(
        {
            EMBEDDING: adamw(o.embedding_lr * scale),
            UNEMBEDDING: adamw(o.unembedding_lr * scale),
            MATRIX: muon,
        },
        param_labels,
    )
    return optax.chain(clip_by_global_norm_dynamic(o.grad_clip), split, scale_by_lr_scale())
