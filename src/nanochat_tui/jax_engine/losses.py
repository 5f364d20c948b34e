"""Cross-entropy without the full ``[B, T, V]`` logits: the lm head runs over chunks of tokens.

``loss_sum(model, x, y, weights=None) -> (sum, count)`` is what a training step needs: the weighted
sum of per-token cross-entropies (nats) and the weight they carry, so gradient accumulation can
add both over micro-batches and divide once. Targets of −1 carry no weight.

The hidden states ``[B, T, D]`` are computed once; the head, soft-cap and log-softmax then run over
``model.loss_chunk`` tokens at a time inside ``lax.scan``, so neither the forward nor the backward
ever holds more than one chunk of logits (fp32 ``[chunk, V]``).

``loss_sum`` (what training differentiates) is a fused head + cross-entropy with a custom VJP: when
differentiated, each chunk's forward also forms its logit gradient ``(softmax − onehot)·cap'`` and
multiplies it out at once (``dh = dl·Wᵀ``, ``dW += hᵀ·dl``), so the backward only scales the two
saved gradients by the incoming cotangent. Three head matmuls a step instead of four (autodiff over
checkpointed chunks recomputes the logits), and no chunk's logits live past its scan step.
``token_losses`` (evaluation) runs the plain head per chunk.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp


def _chunk_ce(model: Any, h: jax.Array, y: jax.Array) -> jax.Array:
    """Per-token cross-entropy ``[C]`` of hidden states ``h [C, D]`` against ``y [C]`` (−1 → 0)."""
    logits = model.head(h)
    lse = jax.nn.logsumexp(logits, axis=-1)
    target = jnp.take_along_axis(logits, jnp.maximum(y, 0)[:, None], axis=-1)[:, 0]
    return jnp.where(y >= 0, lse - target, 0.0)


def _chunks(model: Any, idx: jax.Array, y: jax.Array, *extra: jax.Array):
    """Flattened hidden states, targets (and ``extra`` per-token arrays) split into equal chunks,
    padded with target −1; also the chunk count (0 = one unchunked piece)."""
    h = model.hidden(idx)
    h = h.reshape(-1, h.shape[-1])
    flat = [y.reshape(-1), *(e.reshape(-1) for e in extra)]
    n, size = h.shape[0], model.config.loss_chunk
    if size <= 0 or n <= size:
        return h, flat, 0
    pad = -n % size
    if pad:
        h = jnp.pad(h, ((0, pad), (0, 0)))
        flat = [jnp.pad(flat[0], (0, pad), constant_values=-1)] + [
            jnp.pad(e, (0, pad)) for e in flat[1:]
        ]
    k = (n + pad) // size
    return h.reshape(k, size, -1), [a.reshape(k, size) for a in flat], k


def _capped_logits(h: jax.Array, w: jax.Array, softcap: float, dtype) -> tuple[jax.Array, Any]:
    """fp32 logits of ``h [C, D]`` under head kernel ``w [D, V]`` in the compute ``dtype``, soft-capped
    (as ``GPT.head``), and the cap's derivative factor (None without a cap)."""
    z = jnp.dot(h.astype(dtype), w.astype(dtype)).astype(jnp.float32)
    if softcap <= 0:
        return z, None
    t = jnp.tanh(z / softcap)
    return softcap * t, t


def _head_ce(h, w, y, wt, softcap: float, dtype, grads: bool):
    """``Σ wt·CE`` of chunked hidden states ``h [k, C, D]`` against ``y [k, C]`` (weights ``wt``,
    zero where the target is −1); with ``grads`` also ``d/dh [k, C, D]`` and ``d/dw [D, V]``."""
    vocab = w.shape[1]

    def body(carry, chunk):
        total, dw = carry
        hc, yc, wc = chunk
        logits, t = _capped_logits(hc, w, softcap, dtype)
        # capped logits lie in [-cap, cap]: shift by the cap, no max pass (exp(-2·cap) stays a
        # normal fp32 number up to cap 40)
        if 0 < softcap <= 40:
            m = jnp.full((logits.shape[0], 1), softcap, jnp.float32)
        else:
            m = jnp.max(logits, axis=-1, keepdims=True)
        e = jnp.exp(logits - m)
        s = jnp.sum(e, axis=-1, keepdims=True)
        onehot = jnp.arange(vocab)[None, :] == jnp.maximum(yc, 0)[:, None]
        target = jnp.sum(jnp.where(onehot, logits, 0.0), axis=-1)
        total = total + jnp.sum(wc * (m[:, 0] + jnp.log(s[:, 0]) - target))
        if not grads:
            return (total, dw), None
        dl = (e / s - onehot) * wc[:, None]
        if t is not None:
            dl = dl * (1.0 - t * t)
        dl = dl.astype(dtype)
        dh = jnp.dot(dl, w.astype(dtype).T).astype(h.dtype)
        dw = dw + jnp.dot(hc.astype(dtype).T, dl).astype(jnp.float32)
        return (total, dw), dh

    dw0 = jnp.zeros(w.shape, jnp.float32) if grads else None
    (total, dw), dh = jax.lax.scan(body, (jnp.zeros((), jnp.float32), dw0), (h, y, wt))
    return total, dh, dw


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _fused_ce_sum(h, w, y, wt, softcap: float, dtype) -> jax.Array:
    return _head_ce(h, w, y, wt, softcap, dtype, grads=False)[0]


def _fused_fwd(h, w, y, wt, softcap, dtype):
    total, dh, dw = _head_ce(h, w, y, wt, softcap, dtype, grads=True)
    return total, (dh, dw.astype(w.dtype), y, wt)


def _fused_bwd(softcap, dtype, res, g):
    del softcap, dtype
    dh, dw, y, wt = res
    # the targets are integers (float0 cotangent); the weights are data, not trained
    y_ct = jnp.zeros(y.shape, jax.dtypes.float0)
    return (g * dh).astype(dh.dtype), (g * dw).astype(dw.dtype), y_ct, jnp.zeros_like(wt)


_fused_ce_sum.defvjp(_fused_fwd, _fused_bwd)


def loss_sum(
    model: Any, idx: jax.Array, targets: jax.Array, weights: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """``(Σ w·CE, Σ w)`` over tokens whose target is not −1 (``w`` = ``weights`` or 1), fp32."""
    valid = targets >= 0
    w = valid.astype(jnp.float32) if weights is None else weights.astype(jnp.float32) * valid
    h, (y, wc), k = _chunks(model, idx, targets, w)
    if k == 0:  # one chunk of everything
        h, y, wc = h[None], y[None], wc[None]
    cfg = model.config
    kernel = model.lm_head.kernel[...]
    if kernel.shape[1] != cfg.vocab_size:  # padded vocab rows never reach the loss
        kernel = kernel[:, : cfg.vocab_size]
    total = _fused_ce_sum(h, kernel, y, wc, float(cfg.softcap), jnp.dtype(model.dtype))
    return total, jnp.sum(w)


def token_losses(model: Any, idx: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-token cross-entropy ``float32[B, T]`` (nats); positions with target −1 give 0."""
    h, (y,), k = _chunks(model, idx, targets)
    if k == 0:
        return _chunk_ce(model, h, y).reshape(targets.shape)
    ce = jax.lax.map(lambda chunk: _chunk_ce(model, *chunk), (h, y))
    return ce.reshape(-1)[: targets.size].reshape(targets.shape)


def loss_fn(model: Any, idx: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean cross-entropy over the tokens whose target is not −1."""
    total, count = loss_sum(model, idx, targets)
    return total / jnp.maximum(count, 1.0)
