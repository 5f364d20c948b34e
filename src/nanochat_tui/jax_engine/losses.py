"""Cross-entropy without the full ``[B, T, V]`` logits: the lm head runs over chunks of tokens.

``loss_sum(model, x, y, weights=None) -> (sum, count)`` is what a training step needs: the weighted
sum of per-token cross-entropies (nats) and the weight they carry, so gradient accumulation can
add both over micro-batches and divide once. Targets of −1 carry no weight.

The hidden states ``[B, T, D]`` are computed once; the head, soft-cap and log-softmax then run over
``model.loss_chunk`` tokens at a time inside ``lax.scan`` with ``jax.checkpoint``, so neither the
forward nor the backward ever holds more than one chunk of logits (fp32 ``[chunk, V]``).
"""

from __future__ import annotations

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


def loss_sum(
    model: Any, idx: jax.Array, targets: jax.Array, weights: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """``(Σ w·CE, Σ w)`` over tokens whose target is not −1 (``w`` = ``weights`` or 1), fp32."""
    valid = targets >= 0
    w = valid.astype(jnp.float32) if weights is None else weights.astype(jnp.float32) * valid
    h, (y, wc), k = _chunks(model, idx, targets, w)
    if k == 0:
        total = jnp.sum(_chunk_ce(model, h, y) * wc)
    else:

        @jax.checkpoint
        def body(acc, chunk):
            hc, yc, wcc = chunk
            return acc + jnp.sum(_chunk_ce(model, hc, yc) * wcc), None

        total, _ = jax.lax.scan(body, jnp.zeros((), jnp.float32), (h, y, wc))
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
