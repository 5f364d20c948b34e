"""The jitted training step shared by the train loop and the throughput benchmark.

``step = make_train_step(model, optimizer)`` then ``out = step(model, optimizer, x, y, lr_scale)``:

- ``optimizer`` is ``nnx.Optimizer(model, build_optimizer(model, config), wrt=nnx.Param)``
- ``x``/``y`` are ``int32[B, T]`` (one micro-step) or ``int32[M, B, T]`` (gradient accumulation over
  ``M`` micro-batches inside the same jitted call, via ``lax.scan``; gradients are averaged)
- ``lr_scale`` is a host float (``lr_schedule(...) * optim.lr_multiplier``) passed as a traced
  scalar, as is the optional ``grad_clip``; changing them never recompiles
- returns ``StepOut(loss, grad_norm)``: the mean loss and the global gradient norm before clipping,
  as device scalars (no host sync inside the step; call ``float()`` when you need them). The model
  and optimizer buffers are donated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from nanochat_tui.jax_engine.model import GPT, loss_fn


class StepOut(NamedTuple):
    loss: jax.Array
    grad_norm: jax.Array


def _step(
    model: GPT,
    optimizer: nnx.Optimizer,
    x: jax.Array,
    y: jax.Array,
    lr_scale: jax.Array,
    grad_clip: jax.Array | None,
) -> StepOut:
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_of(p: Any, xb: jax.Array, yb: jax.Array) -> jax.Array:
        return loss_fn(nnx.merge(graphdef, p, rest), xb, yb)

    grad_fn = jax.value_and_grad(loss_of)
    if x.ndim == 2:
        loss, grads = grad_fn(params, x, y)
    else:

        def micro(carry, batch):
            loss_sum, grad_sum = carry
            loss_i, grads_i = grad_fn(params, *batch)
            return (loss_sum + loss_i, jax.tree.map(jnp.add, grad_sum, grads_i)), None

        zeros = jax.tree.map(jnp.zeros_like, params)
        (loss, grads), _ = jax.lax.scan(micro, (jnp.zeros((), jnp.float32), zeros), (x, y))
        n = x.shape[0]
        loss = loss / n
        grads = jax.tree.map(lambda g: g / n, grads)
    kwargs = {"lr_scale": lr_scale}
    if grad_clip is not None:
        kwargs["grad_clip"] = grad_clip
    optimizer.update(model, grads, **kwargs)
    return StepOut(loss, optax.tree.norm(grads))


_jitted_step = nnx.jit(_step, donate_argnums=(0, 1))


def make_train_step(model: GPT, optimizer: nnx.Optimizer) -> Callable[..., StepOut]:
    """The jitted step ``(model, optimizer, x, y, lr_scale, grad_clip=None) -> StepOut``.

    The step is bound to this ``model`` and ``optimizer`` with ``nnx.cached_partial``, which walks
    their graph once instead of on every call (``nnx.jit`` alone re-walks it per call: ~6 ms a step
    for ``tiny`` on CPU, tens of ms for d12+). Their variables are shared, so every update is visible
    through ``model`` and ``optimizer`` as before; passing other objects is an error.
    """
    with nnx.set_graph_mode(True), nnx.set_graph_updates(True):
        cached = nnx.cached_partial(_jitted_step, model, optimizer)

    def train_step(
        model_: GPT,
        optimizer_: nnx.Optimizer,
        x: jax.Array,
        y: jax.Array,
        lr_scale: float,
        grad_clip: float | None = None,
    ) -> StepOut:
        if model_ is not model or optimizer_ is not optimizer:
            raise ValueError("this train step is bound to the model and optimizer it was made for")
        clip = None if grad_clip is None else jnp.asarray(grad_clip, jnp.float32)
        return cached(x, y, jnp.asarray(lr_scale, jnp.float32), clip)

    return train_step


@nnx.jit
def eval_token_losses(model: GPT, x: jax.Array, y: jax.Array) -> jax.Array:
    """Jitted per-token losses ``float32[B, T]`` for validation / bits-per-byte."""
    from nanochat_tui.jax_engine.model import token_losses

    return token_losses(model, x, y)
