"""The jitted training step shared by the train loop and the throughput benchmark.

``step = make_train_step(model, optimizer, loss)`` then ``out = step(model, optimizer, x, y, lr)``:

- ``optimizer`` is ``nnx.Optimizer(model, build_optimizer(model, config), wrt=nnx.Param)``
- ``loss(model, x, y) -> (loss_sum, token_count, aux)`` is a task's loss on one micro-batch
  (tasks/__init__.py); the default is pretraining's token cross-entropy (targets −1 are masked)
- ``x``/``y`` are pytrees (for pretraining plain ``int32`` arrays) whose leaves have a leading
  micro-batch axis ``[M, B, ...]``; a plain ``int32[B, T]`` array pair is one micro-batch.
  Gradient accumulation runs inside the same jitted call (``lax.scan``) and is **token-weighted**:
  loss sums, aux sums, token counts and gradients of the sums are added over micro-batches and
  divided once by the total count, so masked micro-batches with different counts are unbiased
- ``lr_scale`` is a host float (``lr_schedule(...) * optim.lr_multiplier``) passed as a traced
  scalar, as is the optional ``grad_clip``; changing them never recompiles
- ``hooks`` (jax_engine/hooks.py, optional): plugin loss terms (per-token means, weighted by the
  micro-batch's count like the task loss) and step metrics (into ``aux``), read from the model
  right after the task's forward
- returns ``StepOut(loss, grad_norm, tokens, aux)``: the mean loss, the global gradient norm
  before clipping, the supervised token count and the task's aux metrics (each divided by the
  count), as device scalars (no host sync inside the step). Model and optimizer buffers are donated.
- with ``model.scan_layers`` in one process and no plugin hooks, the step is a
  ``stacked.StackedTrainStep``: it keeps the blocks' weights and optimizer state stacked over
  layers between steps (compile time flat in depth) and ``step.sync()`` writes them back into
  ``model`` and ``optimizer``; call it before reading either (the loop does before evals,
  samples and saves). Every step has ``sync()`` (a no-op for the per-layer one)
- with a ``placement`` (sharding.py) the step runs on its mesh: each micro-batch is pinned to
  ``B`` over every device, gradients and the updated state to the parameters' shardings (so the
  state keeps its layout from step to step), and Muon sees the mesh (it gathers each matrix).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from nanochat_tui.jax_engine.grads import StepOut, as_f32, averaged, update_kwargs
from nanochat_tui.jax_engine.hooks import EngineHooks
from nanochat_tui.jax_engine.model import GPT
from nanochat_tui.jax_engine.sharding import Placement

LossFn = Callable[[Any, Any, Any], tuple[jax.Array, jax.Array, dict[str, jax.Array]]]


def token_loss_sum(model: GPT, x: jax.Array, y: jax.Array):
    """Pretraining's loss on one micro-batch: (Σ CE over targets ≠ −1, their count, no aux)."""
    from nanochat_tui.jax_engine.losses import loss_sum

    total, count = loss_sum(model, x, y)
    return total, count, {}


def _step(
    loss: LossFn,
    hooks: EngineHooks | None,
    placement: Placement | None,
    model: GPT,
    optimizer: nnx.Optimizer,
    x: Any,
    y: Any,
    lr_scale: jax.Array,
    grad_clip: jax.Array | None,
) -> StepOut:
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_of(p: Any, xb: Any, yb: Any):
        if placement is not None:
            xb, yb = placement.constrain_batch((xb, yb))
        # With hooks, the non-Param variables are fresh copies made inside this trace, so a
        # plugin's module may write per-forward statistics into them for its loss terms to read.
        merged = nnx.merge(graphdef, p, rest if hooks is None else jax.tree.map(lambda a: a, rest))
        total, count, aux = loss(merged, xb, yb)
        if hooks is not None:
            total, aux = _apply_hooks(hooks, merged, total, count, dict(aux))
        return as_f32(total, count, aux)

    grads, out = averaged(jax.value_and_grad(loss_of, has_aux=True), params, x, y)
    if placement is not None:
        grads = placement.constrain(grads)
    optimizer.update(model, grads, **update_kwargs(lr_scale, grad_clip))
    if placement is not None:
        for obj in (model, optimizer):
            nnx.update(obj, placement.constrain(nnx.state(obj)))
    return out


def _apply_hooks(hooks: EngineHooks, model: GPT, total, count, aux: dict[str, Any]):
    """Add plugin loss terms and metrics, both as sums over this micro-batch's units."""
    n = count.astype(jnp.float32)
    for term in hooks.loss_terms:
        total = total + term(model).astype(jnp.float32) * n
    for metrics in hooks.step_metrics:
        for k, v in metrics(model).items():
            aux[k] = jnp.asarray(v, jnp.float32) * n
    return total, aux


@functools.cache
def _jitted(loss: LossFn, hooks: EngineHooks | None, placement: Placement | None):
    return nnx.jit(functools.partial(_step, loss, hooks, placement), donate_argnums=(0, 1))


def make_train_step(
    model: GPT,
    optimizer: nnx.Optimizer,
    loss: LossFn = token_loss_sum,
    hooks: EngineHooks | None = None,
    placement: Placement | None = None,
    stack: bool = True,
) -> Callable[..., StepOut]:
    """The jitted step ``(model, optimizer, x, y, lr_scale, grad_clip=None) -> StepOut``, with a
    ``sync()`` to call before reading ``model`` or ``optimizer`` (the stacked step under
    ``scan_layers`` keeps its state apart between syncs; see the module docstring).

    The per-layer step is bound to this ``model`` and ``optimizer`` with ``nnx.cached_partial``, which walks
    their graph once instead of on every call (``nnx.jit`` alone re-walks it per call: ~6 ms a step
    for ``tiny`` on CPU, tens of ms for d12+). Their variables are shared, so every update is visible
    through ``model`` and ``optimizer`` as before; passing other objects is an error. ``loss`` must
    be a module-level function (it is a static argument of the jit). ``placement``: see the module
    docstring (the state must already be laid out by ``placement.place``). ``stack=False`` keeps
    the per-layer step where the stacked one would run (benchmarks and tests compare the two).
    """
    from nanochat_tui.jax_engine import stacked

    if stack and hooks is None and jax.process_count() == 1 and stacked.supports(model):
        return stacked.StackedTrainStep(model, optimizer, loss, placement)
    with nnx.set_graph_mode(True), nnx.set_graph_updates(True):
        cached = nnx.cached_partial(_jitted(loss, hooks, placement), model, optimizer)

    def train_step(
        model_: GPT,
        optimizer_: nnx.Optimizer,
        x: Any,
        y: Any,
        lr_scale: float,
        grad_clip: float | None = None,
    ) -> StepOut:
        if model_ is not model or optimizer_ is not optimizer:
            raise ValueError("this train step is bound to the model and optimizer it was made for")
        clip = None if grad_clip is None else jnp.asarray(grad_clip, jnp.float32)
        if placement is None:
            return cached(x, y, jnp.asarray(lr_scale, jnp.float32), clip)
        with jax.set_mesh(placement.mesh):  # traced under it: Muon gathers each matrix
            return cached(x, y, jnp.asarray(lr_scale, jnp.float32), clip)

    train_step.sync = lambda: None  # the model and optimizer are always current here
    return train_step


@nnx.jit
def eval_token_losses(model: GPT, x: jax.Array, y: jax.Array) -> jax.Array:
    """Jitted per-token losses ``float32[B, T]`` for validation / bits-per-byte."""
    from nanochat_tui.jax_engine.model import token_losses

    return token_losses(model, x, y)
