"""Gradient accumulation and the step's outputs, shared by the per-layer step (step.py) and the
stacked one (stacked.py): token-weighted sums over micro-batches, divided once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class StepOut(NamedTuple):
    loss: jax.Array
    grad_norm: jax.Array
    tokens: jax.Array
    aux: dict[str, jax.Array]


def _accumulate(grad_fn: Callable, params: Any, x: Any, y: Any):
    """``(Σ loss, Σ count, Σ aux, Σ grads)`` of ``grad_fn(params, xb, yb)`` (a value_and_grad
    with ``has_aux``: ``(total, (count, aux)), grads``) over the micro-batches of ``x``/``y``
    (leading axis ``M``; a plain ``[B, T]`` pair is one micro-batch), summed, not divided."""
    if jax.tree.leaves(x)[0].ndim == 2:  # one micro-batch given without its micro axis
        x, y = jax.tree.map(lambda a: a[None], (x, y))
    if jax.tree.leaves(x)[0].shape[0] == 1:
        (total, (count, aux)), grads = grad_fn(params, *jax.tree.map(lambda a: a[0], (x, y)))
        return total, count, aux, grads

    def micro(carry, batch):
        (total_i, (count_i, aux_i)), grads_i = grad_fn(params, *batch)
        new = (total_i, count_i, aux_i, grads_i)
        return jax.tree.map(jnp.add, carry, new), None

    xb0, yb0 = jax.tree.map(lambda a: a[0], (x, y))
    (_, (_, aux_shape)), _ = jax.eval_shape(grad_fn, params, xb0, yb0)
    zeros = (
        jnp.zeros((), jnp.float32),
        jnp.zeros((), jnp.float32),
        jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), aux_shape),
        jax.tree.map(jnp.zeros_like, params),
    )
    (total, count, aux, grads), _ = jax.lax.scan(micro, zeros, (x, y))
    return total, count, aux, grads


def averaged(grad_fn: Callable, params: Any, x: Any, y: Any) -> tuple[Any, StepOut]:
    """The token-weighted mean gradients over the micro-batches (``_accumulate``'s sums divided
    once by the total count) and the step's outputs: mean loss, gradient norm (before clipping),
    count and mean aux metrics."""
    total, count, aux, grads = _accumulate(grad_fn, params, x, y)
    denom = jnp.maximum(count, 1.0)
    grads = jax.tree.map(lambda g: g / denom.astype(g.dtype), grads)
    aux = {k: v / denom for k, v in aux.items()}
    return grads, StepOut(total / denom, optax.tree.norm(grads), count, aux)


def as_f32(total: jax.Array, count: jax.Array, aux: dict[str, Any]):
    """A task loss's ``(total, count, aux)`` as ``value_and_grad(has_aux=True)`` takes it, fp32."""
    aux = {k: jnp.asarray(v, jnp.float32) for k, v in aux.items()}
    return total.astype(jnp.float32), (count.astype(jnp.float32), aux)


def update_kwargs(lr_scale: jax.Array, grad_clip: jax.Array | None) -> dict[str, jax.Array]:
    """The optimizer's extra arguments (optim.py): ``lr_scale``, and ``grad_clip`` when given."""
    return {"lr_scale": lr_scale} | ({} if grad_clip is None else {"grad_clip": grad_clip})
