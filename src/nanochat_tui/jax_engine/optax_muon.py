"""``optax.contrib.muon`` with each shape's Newton–Schulz chains batched into one.

The 2025 recipe's Muon is optax's, and stays optax's: the same transforms, hyperparameters and
state (so its checkpoints, ``inject_hyperparams`` included, are unchanged), and the same math.
optax runs one Newton–Schulz chain per matrix, so the compiled optimizer, and its compile time,
grow with depth even when the blocks are scanned. Here the matrices of one shape (every block's
``c_q``, say) are stacked, optax's own ``scale_by_muon`` runs once on the stack (its dimension
numbers make the leading axis a batch axis, which it vmaps), and the results are split back into
one leaf per weight. ``tests/test_optim.py`` checks state structure and updates against
``optax.contrib.muon`` itself.

A 3-D leaf is a stack of matrices already (one weight over the layers of a scanned run,
``stacked.py``): it joins its matrix shape's batch, and ``scale_by_shape`` sees each matrix's
shape.

Only what this project passes is supported: the default 2-D rule (no
``muon_weight_dimension_numbers``) and numeric ``ns_coeffs``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from optax._src.numerics import safe_increment  # optax's own step counter (scale_by_muon's)
from optax.contrib import MuonDimensionNumbers, MuonState

from nanochat_tui.jax_engine.muon import batch_of, matrix_groups, quintic_step, split_batch

# stacked [n, in, out]: axis 0 is the batch optax vmaps over, then optax's default 2-D rule
_STACKED = MuonDimensionNumbers(reduction_axis=1, output_axis=2)
_MATRIX = MuonDimensionNumbers()


def _scale_stacks_by_muon_in(
    dtype: Any, ns_steps: Any, beta: Any, eps: Any, mu_dtype: Any, *, nesterov: bool, **kwargs: Any
) -> optax.GradientTransformation:
    """``optax.contrib.scale_by_muon``'s update on a list of ``[n, in, out]`` stacks, with the
    Newton–Schulz matmuls' operands in ``dtype`` (``muon.matmul_in``): the same momentum,
    Nesterov mix, Frobenius preconditioning, iteration and state as optax's, whose own iteration
    runs in the momentum's dtype (fp32). Used when the run computes in bf16."""
    if kwargs.get("adaptive") or kwargs.get("preconditioning", "frobenius") != "frobenius":
        raise ValueError("bf16 Newton–Schulz supports optax's default Muon only")

    def newton_schulz(m: jax.Array, coeffs: jax.Array) -> jax.Array:  # one [in, out] matrix
        m = m / (jnp.linalg.norm(m, ord="fro") + eps)
        steps = jnp.broadcast_to(coeffs, (ns_steps, 3)) if coeffs.ndim == 1 else coeffs
        for i in range(steps.shape[0]):
            m = quintic_step(m, steps[i, 0], steps[i, 1], steps[i, 2], dtype)
        return m

    def update_fn(updates: Any, state: MuonState, params: Any = None):
        del params
        mu = optax.tree.update_moment(updates, state.mu, beta, 1)
        count_inc = safe_increment(state.count)
        if nesterov:
            mu_hat = jax.tree.map(
                lambda m, g: beta * m + (1 - beta) * g,
                optax.tree.bias_correction(mu, beta, safe_increment(count_inc)),
                optax.tree.bias_correction(updates, beta, count_inc),
            )
        else:
            mu_hat = optax.tree.bias_correction(mu, beta, count_inc)
        coeffs = state.ns_coeffs.astype(jnp.float32)
        out = [jax.vmap(newton_schulz, (0, None))(x, coeffs).astype(x.dtype) for x in mu_hat]
        return out, MuonState(count_inc, optax.tree.cast(mu, mu_dtype), state.ns_coeffs)

    # init is grouped_scale_by_muon's (optax's per-leaf state); this transform only updates
    return optax.GradientTransformation(lambda params: None, update_fn)


def grouped_scale_by_muon(
    ns_coeffs: Any,
    ns_steps: Any,
    beta: Any,
    eps: Any,
    mu_dtype: Any,
    ns_dtype: Any = None,
    **kwargs: Any,
) -> optax.GradientTransformation:
    """``optax.contrib.scale_by_muon`` on 2-D leaves, one batched chain per shape; same state.
    ``ns_dtype`` (bf16, say): the Newton–Schulz matmuls' operand dtype; None: optax's own."""
    per_leaf = optax.contrib.scale_by_muon(ns_coeffs, ns_steps, beta, eps, mu_dtype, **kwargs)
    if ns_dtype is None or jnp.dtype(ns_dtype) == jnp.float32:
        stacked = optax.contrib.scale_by_muon(
            ns_coeffs,
            ns_steps,
            beta,
            eps,
            mu_dtype,
            weight_dimension_numbers=lambda tree: [_STACKED] * len(tree),
            **kwargs,
        )
    else:
        stacked = _scale_stacks_by_muon_in(ns_dtype, ns_steps, beta, eps, mu_dtype, **kwargs)

    def update_fn(updates: Any, state: MuonState, params: Any = None):
        del params
        leaves, treedef = jax.tree.flatten(updates)
        if not leaves:
            return per_leaf.update(updates, state)
        mus = treedef.flatten_up_to(state.mu)
        groups = matrix_groups(leaves, leaves)  # one batch per matrix shape, 2-D or stacked
        inner = MuonState(state.count, [batch_of(mus, g, leaves) for g in groups], state.ns_coeffs)
        new, inner = stacked.update([batch_of(leaves, g, leaves) for g in groups], inner)
        out: list[Any] = [None] * len(leaves)
        mu: list[Any] = [None] * len(leaves)
        for group, upd, m in zip(groups, new, inner.mu, strict=True):
            for i, u, v in zip(
                group, split_batch(upd, group, leaves), split_batch(m, group, leaves), strict=True
            ):
                out[i], mu[i] = u, v
        return treedef.unflatten(out), MuonState(
            inner.count, treedef.unflatten(mu), inner.ns_coeffs
        )

    return optax.GradientTransformation(per_leaf.init, update_fn)


def grouped_muon(
    learning_rate: Any,
    ns_coeffs: Any = (3.4445, -4.775, 2.0315),
    ns_steps: Any = 5,
    beta: Any = 0.95,
    eps: Any = 1e-8,
    weight_decay: Any = 0.0,
    weight_decay_mask: Any = None,
    mu_dtype: Any = None,
    *,
    nesterov: bool = True,
    adaptive: bool = False,
    preconditioning: str = "frobenius",
    adam_b1: Any = 0.9,
    adam_b2: Any = 0.999,
    adam_eps_root: Any = 0.0,
    adam_weight_decay: Any = 0.0,
    adam_learning_rate: Any = None,
    muon_weight_dimension_numbers: Any = None,
    consistent_rms: Any = None,
    ns_dtype: Any = None,
) -> optax.GradientTransformation:
    """``optax.contrib.muon`` (same arguments, state and updates), batched by shape; the
    Newton–Schulz matmuls' operands in ``ns_dtype`` when given (``grouped_muon_in``)."""
    from optax.contrib._muon import scale_by_shape  # optax's own width scaling

    if muon_weight_dimension_numbers is not None or isinstance(ns_coeffs, str):
        raise ValueError("grouped_muon supports the default 2-D rule and numeric ns_coeffs only")

    def labels(params: Any) -> Any:  # optax's rule, plus 3-D stacks of matrices (stacked.py)
        return jax.tree.map(lambda x: "muon" if x.ndim in (2, 3) else "adam", params)

    def dims(params: Any) -> Any:  # optax's normalised dimension numbers (masked where adam)
        rule = {2: _MATRIX, 3: _STACKED}
        return jax.tree.map(lambda x: rule.get(x.ndim, optax.MaskedNode()), params)

    return optax.partition(
        {
            "muon": optax.chain(
                grouped_scale_by_muon(
                    ns_coeffs,
                    ns_steps,
                    beta,
                    eps,
                    mu_dtype,
                    ns_dtype,
                    nesterov=nesterov,
                    adaptive=adaptive,
                    preconditioning=preconditioning,
                ),
                scale_by_shape(weight_dimension_numbers=dims, consistent_rms=consistent_rms),
                optax.add_decayed_weights(weight_decay, weight_decay_mask),
                optax.scale_by_learning_rate(learning_rate),
            ),
            "adam": optax.adamw(
                learning_rate=learning_rate if adam_learning_rate is None else adam_learning_rate,
                b1=adam_b1,
                b2=adam_b2,
                eps=eps,
                eps_root=adam_eps_root,
                weight_decay=adam_weight_decay,
                mu_dtype=mu_dtype,
                nesterov=nesterov,
            ),
        },
        labels,
    )


# the same signature as optax's, so ``inject_hyperparams`` injects (and stores) the same hyperparams
grouped_muon.__signature__ = inspect.signature(optax.contrib.muon)  # type: ignore[attr-defined]


def grouped_muon_in(ns_dtype: Any = None) -> Callable[..., optax.GradientTransformation]:
    """``grouped_muon`` with its Newton–Schulz matmuls in ``ns_dtype``, as a factory with
    optax's signature (what ``inject_hyperparams`` inspects)."""

    def factory(*args: Any, **kwargs: Any) -> optax.GradientTransformation:
        return grouped_muon(*args, ns_dtype=ns_dtype, **kwargs)

    factory.__signature__ = grouped_muon.__signature__  # type: ignore[attr-defined]
    return factory
