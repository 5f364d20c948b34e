"""nanochat's current Muon as an optax transform: Polar Express, NorMuon, cautious weight decay.

One step per 2-D weight ``W`` (after karpathy/nanochat ``nanochat/optim.py``; the math is done in
PyTorch's ``[out, in]`` layout, i.e. on the transpose of our ``[in, out]`` kernels):

1. Nesterov momentum, EMA form: ``buf ← m·buf + (1−m)·g``, ``g ← (1−m)·g + m·buf``.
2. ``renorm``: MuonEq row equilibration (every output row rescaled to the mean row norm).
3. Orthogonalise: 5 quintic iterations ``X ← aX + (bA + cA²)X`` with ``A = XXᵀ`` (on the smaller
   side), from ``X = G / (1.01‖G‖_F)`` with the Polar Express per-step coefficients, or from
   ``X = G / ‖G‖_F`` with the fixed Newton–Schulz ones. The iterations' matmuls take bf16
   operands when the run computes in bf16 (GPU/TPU; nanochat does the same), fp32 otherwise.
4. ``renorm``: Muon+ — snap ``‖X‖_F`` to ``√min(out, in)``.
5. ``normuon``: per-neuron second moment ``v ← β2·v + (1−β2)·mean(X², reduced dim)``, then
   ``X ← X / √v`` rescaled to keep ``‖X‖_F``.
6. Update ``−lr'·(X + wd·W·mask)`` with ``lr' = lr·√max(1, out/in)`` and ``mask = (X·W ≥ 0)``
   when ``cautious`` (else 1).

A 3-D leaf ``[E, in, out]`` (a stack of MoE experts, or one weight over the layers of a scanned
run, ``stacked.py``) is E matrices: every step above runs per matrix. All matrices of one shape
(every block's ``c_q``, ``c_k``, ``c_v`` and ``c_proj``, say, 2-D or stacked) are batched into one
vmapped step (``matrix_groups``), so the optimizer's program does not grow with depth or with
the number of weights; its state stays one leaf per weight.

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


def matmul_in(a: jax.Array, b: jax.Array, dtype: Any = jnp.float32) -> jax.Array:
    """``a @ b`` with its operands in ``dtype`` and an fp32 result. Newton–Schulz is most of
    Muon's work; nanochat runs it in bf16 on GPUs, and so does the engine when the compute dtype
    is bf16 (``optim.build_optimizer``): tensor-core operands, fp32 accumulation, and the
    iteration's sums and coefficients kept in fp32. ``float32``: a plain ``a @ b``."""
    if jnp.dtype(dtype) == jnp.float32:
        return a @ b
    return jnp.matmul(a.astype(dtype), b.astype(dtype), preferred_element_type=jnp.float32)


def quintic_step(x: jax.Array, a: Any, b: Any, c: Any, dtype: Any = jnp.float32) -> jax.Array:
    """One Newton–Schulz / Polar Express iteration ``X ← aX + (bA + cA²)X`` on the smaller side
    (``A = XXᵀ``, or ``XᵀX`` with the product on the right for a tall ``X``); matmuls in
    ``dtype`` (``matmul_in``). Both Muons (this one and ``optax_muon``'s bf16 path) iterate it."""
    if x.shape[0] > x.shape[1]:
        gram = matmul_in(x.T, x, dtype)
        return a * x + matmul_in(x, b * gram + c * matmul_in(gram, gram, dtype), dtype)
    gram = matmul_in(x, x.T, dtype)
    return a * x + matmul_in(b * gram + c * matmul_in(gram, gram, dtype), x, dtype)


def orthogonalize(
    g: jax.Array, polar_express: bool, renorm: bool, dtype: Any = jnp.float32
) -> jax.Array:
    """Steps 2–4 on one ``[out, in]`` matrix (fp32; the iterations' matmuls in ``dtype``)."""
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
    for a, b, c in coeffs:
        x = quintic_step(x, a, b, c, dtype)
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


def matrix_groups(grads: list[jax.Array], params: list[jax.Array]) -> list[list[int]]:
    """Indices of the matrix leaves grouped by (matrix shape, dtypes), in first-seen order: 2-D
    leaves and 3-D stacks of matrices (MoE experts, one weight over a scanned run's layers)
    alike. The blocks' matrices come in a few shapes however deep the model is, so batching each
    group's Newton–Schulz keeps the optimizer's compiled program, and compile time, from growing
    with depth or with the number of weights."""
    groups: dict[Any, list[int]] = {}
    for i, (g, p) in enumerate(zip(grads, params, strict=True)):
        groups.setdefault((g.shape[-2:], g.dtype, p.dtype), []).append(i)
    return list(groups.values())


def batch_of(col: list[jax.Array], group: list[int], grads: list[jax.Array]) -> jax.Array:
    """The group's leaves of ``col`` (grads, or state shaped per matrix like them) as one
    ``[n, ...]`` batch: a 2-D leaf is one entry, a 3-D one its leading size; a lone 3-D leaf as
    it is (no copy)."""
    if len(group) == 1 and grads[group[0]].ndim == 3:
        return col[group[0]]
    return jnp.concatenate([col[i] if grads[i].ndim == 3 else col[i][None] for i in group])


def split_batch(batch: jax.Array, group: list[int], grads: list[jax.Array]) -> list[jax.Array]:
    """``batch_of``'s inverse: one array per leaf of ``group``."""
    if len(group) == 1 and grads[group[0]].ndim == 3:
        return [batch]
    out, start = [], 0
    for i in group:
        n = grads[i].shape[0] if grads[i].ndim == 3 else 1
        part = batch[start : start + n]
        out.append(part if grads[i].ndim == 3 else part[0])
        start += n
    return out


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
    ns_dtype: Any = jnp.float32,
) -> optax.GradientTransformation:
    """Muon for 2-D ``[in, out]`` kernels (see the module docstring); needs ``params`` in update.
    ``ns_dtype``: the Newton–Schulz matmuls' operand dtype (``matmul_in``)."""

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
            x = orthogonalize(gathered(g).T, polar_express, renorm, ns_dtype)
            if normuon:
                x, v = variance_reduce(x, v, beta2)
            w = p.astype(jnp.float32).T
            lr = learning_rate * max(1.0, x.shape[0] / x.shape[1]) ** 0.5
            decay = w * (x * w >= 0) if cautious else w
            return (-lr * (x + wd * decay)).T.astype(p.dtype), buf, v

        gs, treedef = jax.tree.flatten(updates)
        columns = [gs, *(treedef.flatten_up_to(t) for t in (state.momentum, state.second, params))]
        out: list[Any] = [None] * len(gs)
        for group in matrix_groups(gs, columns[3]):  # one batched chain per matrix shape
            results = jax.vmap(one)(*(batch_of(col, group, gs) for col in columns))
            parts = [split_batch(r, group, gs) for r in results]
            for j, i in enumerate(group):
                out[i] = tuple(p[j] for p in parts)
        new_updates, new_buf, new_v = (treedef.unflatten([o[k] for o in out]) for k in range(3))
        return new_updates, MuonState(state.count + 1, new_buf, new_v)

    return optax.GradientTransformation(init_fn, update_fn)
