"""nanochat's current Muon as an optax transform: Polar Express, NorMuon, cautious weight decay.

One step per 2-D weight ``W`` (after karpathy/nanochat ``nanochat/optim.py``; the math is done in
PyTorch's ``[out, in]`` layout, i.e. on the transpose of our ``[in, out]`` kernels):

1. Nesterov momentum, EMA form: ``buf ← m·buf + (1−m)·g``, ``g ← (1−m)·g + m·buf``.
2. ``renorm``: MuonEq row equilibration (every output row rescaled to the mean row norm).
3. Orthogonalise: 5 quintic iterations ``X ← aX + (bA + cA²)X`` with ``A = XXᵀ`` (on the smaller
   side), from ``X = G / (1.01‖G‖_F)`` with the Polar Express per-step coefficients, or from
   ``X = G / ‖G‖_F`` with the fixed Newton–Schulz ones.
4. ``renorm``: Muon+ — snap ``‖X‖_F`` to ``√min(out, in)``.
5. ``normuon``: per-neuron second moment ``v ← β2·v + (1−β2)·mean(X², reduced dim)``, then
   ``X ← X / √v`` rescaled to keep ``‖X‖_F``.
6. Update ``−lr'·(X + wd·W·mask)`` with ``lr' = lr·√max(1, out/in)`` and ``mask = (X·W ≥ 0)``
   when ``cautious`` (else 1).

A 3-D leaf ``[E, in, out]`` (a stack of MoE experts) is E matrices: every step above runs per
expert, batched over the leading axis (one batched Newton–Schulz, not E separate ones). 2-D
leaves of the same shape (every block's ``c_q``, say) are stacked and batched the same way for
the step, so the optimizer's program does not grow with depth; its state stays one leaf per
weight.

``momentum(count)`` and ``weight_decay(count)`` are schedules of the transform's own step count, so
a resumed run continues them exactly. The caller's learning-rate schedule multiplies the whole update
afterwards (``scale_by_lr_scale`` in optim.py), which is how nanochat scales ``lr`` and ``lr·wd``.

On a mesh (sharding.py) each matrix's momentum-mixed gradient is gathered whole onto every device
before step 2, so the Newton–Schulz iterations are plain local matmuls; the update is split back
onto the parameter's sharding by the step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from nanochat_tui.jax_engine.sharding import gathered

# Polar Express coefficients (num_iters=5, safety 2e-2, cushion 2), arXiv:2505.16932.
POLAR_EXPRESS = (
    (8.156554524902461, -22.48329292557795, 15.878769915207462),
    (4.042929935166739, -2.808917465908714, 0.5000178451051316),
    (3.8916678022926607, -2.772484153217685, 0.5060648178503393),
    (3.285753657755655, -2.3681294933425376, 0.46449024233003106),
    (2.3465413258596377, -1.7097828382687081, 0.42323551169305323),
)
# Keller Jordan's Newton–Schulz quintic, used at every step when Polar Express is off.
NEWTON_SCHULZ = ((3.4445, -4.7750, 2.0315),) * 5


class MuonState(NamedTuple):
    count: jax.Array
    momentum: Any  # like params
    second: Any  # per-neuron second moments, [out, 1] or [1, in] per weight (torch layout)


def _fro(x: jax.Array) -> jax.Array:
    return jnp.sqrt(jnp.sum(jnp.square(x)))


def orthogonalize(g: jax.Array, polar_express: bool, renorm: bool) -> jax.Array:
    """Steps 2–4 on one ``[out, in]`` matrix (fp32)."""
    x = g
    if renorm:
        target = _fro(x) / jnp.sqrt(x.shape[0])
        rows = jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), 1e-6)
        x = x * (target / rows)
    if polar_express:
        x = x / (_fro(x) * 1.01 + 1e-6)
        coeffs = POLAR_EXPRESS
    else:
        x = x / (_fro(x) + 1e-7)
        coeffs = NEWTON_SCHULZ
    tall = x.shape[0] > x.shape[1]
    for a, b, c in coeffs:
        if tall:
            gram = x.T @ x
            x = a * x + x @ (b * gram + c * (gram @ gram))
        else:
            gram = x @ x.T
            x = a * x + (b * gram + c * (gram @ gram)) @ x
    if renorm:
        x = x * (jnp.sqrt(min(x.shape)) / jnp.maximum(_fro(x), 1e-6))
    return x


def _reduce_axis(shape: tuple[int, int]) -> int:
    """NorMuon averages over the input dim for tall/square weights, else the output dim."""
    return -1 if shape[0] >= shape[1] else -2


def variance_reduce(x: jax.Array, v: jax.Array, beta2: float) -> tuple[jax.Array, jax.Array]:
    """Step 5 on one ``[out, in]`` matrix: returns (scaled x, new second moment)."""
    axis = _reduce_axis(x.shape)
    n = x.shape[axis]
    v_mean = jnp.mean(jnp.square(x), axis=axis, keepdims=True)
    v_norm = jnp.sqrt(jnp.sum(v_mean) * n)
    v = beta2 * v + (1 - beta2) * v_mean
    step = jax.lax.rsqrt(jnp.maximum(v, 1e-10))
    v_norm_new = jnp.sqrt(jnp.sum(v_mean * n * jnp.square(step)))
    return x * step * (v_norm / jnp.maximum(v_norm_new, 1e-10)), v


def same_shape_groups(grads: list[jax.Array], params: list[jax.Array]) -> list[list[int]]:
    """Indices of the 2-D leaves grouped by (shape, dtypes), in first-seen order; each 3-D leaf
    (already a stack of experts) alone. The blocks' matrices come in a few shapes however deep
    the model is, so batching each group's Newton–Schulz keeps the optimizer's compiled program,
    and compile time, from growing with depth."""
    groups: dict[Any, list[int]] = {}
    for i, (g, p) in enumerate(zip(grads, params, strict=True)):
        key = (g.shape, g.dtype, p.dtype) if g.ndim == 2 else ("stack", i)
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def nanochat_muon(
    learning_rate: float,
    momentum: Callable[[jax.Array], jax.Array],
    weight_decay: Callable[[jax.Array], jax.Array],
    *,
    polar_express: bool = True,
    normuon: bool = True,
    renorm: bool = True,
    cautious: bool = True,
    beta2: float = 0.9,
) -> optax.GradientTransformation:
    """Muon for 2-D ``[in, out]`` kernels (see the module docstring); needs ``params`` in update."""

    def second_shape(p: jax.Array) -> tuple[int, ...]:
        lead, (in_, out_) = p.shape[:-2], p.shape[-2:]
        return (*lead, *((out_, 1) if _reduce_axis((out_, in_)) == -1 else (1, in_)))

    def init_fn(params: Any) -> MuonState:
        return MuonState(
            jnp.zeros((), jnp.int32),
            jax.tree.map(lambda p: jnp.zeros_like(p, jnp.float32), params),
            jax.tree.map(lambda p: jnp.zeros(second_shape(p), jnp.float32), params),
        )

    def update_fn(updates, state: MuonState, params=None):
        if params is None:
            raise ValueError("nanochat_muon needs params (weight decay and the cautious mask)")
        m = jnp.asarray(momentum(state.count), jnp.float32)
        wd = jnp.asarray(weight_decay(state.count), jnp.float32)

        def one(g, buf, v, p):
            g = g.astype(jnp.float32)
            buf = m * buf + (1 - m) * g
            g = (1 - m) * g + m * buf
            x = orthogonalize(gathered(g).T, polar_express, renorm)
            if normuon:
                x, v = variance_reduce(x, v, beta2)
            w = p.astype(jnp.float32).T
            lr = learning_rate * max(1.0, x.shape[0] / x.shape[1]) ** 0.5
            decay = w * (x * w >= 0) if cautious else w
            return (-lr * (x + wd * decay)).T.astype(p.dtype), buf, v

        gs, treedef = jax.tree.flatten(updates)
        columns = [gs, *(treedef.flatten_up_to(t) for t in (state.momentum, state.second, params))]
        out: list[Any] = [None] * len(gs)
        for group in same_shape_groups(gs, columns[3]):
            if len(group) == 1:  # a matrix of its own shape, or a 3-D stack of experts
                args = [col[group[0]] for col in columns]
                out[group[0]] = one(*args) if gs[group[0]].ndim == 2 else jax.vmap(one)(*args)
                continue
            # one batched chain for the group, not one per matrix
            results = jax.vmap(one)(*(jnp.stack([col[i] for i in group]) for col in columns))
            for j, i in enumerate(group):
                out[i] = tuple(r[j] for r in results)
        new_updates, new_buf, new_v = (treedef.unflatten([o[k] for o in out]) for k in range(3))
        return new_updates, MuonState(state.count + 1, new_buf, new_v)

    return optax.GradientTransformation(init_fn, update_fn)
