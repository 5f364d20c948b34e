"""Causal self-attention kernels: cuDNN on NVIDIA, a blocked causal path on CPU, XLA elsewhere.

All take q ``[B, T, H, D]`` and k, v ``[B, S, KV, D]`` (GQA when ``KV < H``) and return ``[B, T, H, D]``
in q's dtype. ``window`` is nanochat's left window: query ``i`` sees keys ``j`` with
``0 <= i - j <= window`` (None = every earlier key).

Why a blocked path: XLA's dot-product attention computes the whole ``T×T`` score matrix and masks
half of it away. :func:`blocked_causal_attention` splits the queries into blocks and lets each block
attend only to the key blocks it can see (and, for sliding windows, only to those inside the
window), so causal attention does a little over half the work and short windows much less.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Query/key block size of the blocked path, and the shortest sequence it is used for.
BLOCK = 128
# A windowed layer's block: each query block reads its own keys plus ``window`` before them, so
# smaller blocks waste less; at the d4 shape (window 128) fwd+bwd took ≈ 90 ms vs ≈ 107 ms at 128.
WINDOW_BLOCK = 64


def _use_cudnn(dtype) -> bool:
    return jax.default_backend() == "gpu" and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16)


def _softmax_attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """Plain attention with a boolean ``mask [Tq, Tk]``; GQA by grouping the query heads."""
    b, tq, h, d = q.shape
    kv = k.shape[2]
    qg = q.reshape(b, tq, kv, h // kv, d)
    scores = jnp.einsum("bqkgd,bskd->bkgqs", qg, k, preferred_element_type=jnp.float32)
    scores = scores * (d**-0.5)
    scores = jnp.where(mask, scores, -jnp.inf)
    probs = jax.nn.softmax(scores, axis=-1).astype(v.dtype)
    out = jnp.einsum("bkgqs,bskd->bqkgd", probs, v)
    return out.reshape(b, tq, h, d)


def blocked_causal_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, window: int | None = None, block: int = BLOCK
) -> jax.Array:
    """Causal attention that skips key blocks a query block cannot see (exact, same numbers as
    a full masked softmax up to rounding)."""
    t = q.shape[1]
    outs = []
    for start in range(0, t, block):
        stop = min(start + block, t)
        lo = 0 if window is None else max(0, start - window)
        qi = jnp.arange(start, stop)[:, None]
        kj = jnp.arange(lo, stop)[None, :]
        mask = kj <= qi
        if window is not None:
            mask = mask & (qi - kj <= window)
        outs.append(_softmax_attend(q[:, start:stop], k[:, lo:stop], v[:, lo:stop], mask))
    return jnp.concatenate(outs, axis=1)


def causal_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, window: int | None = None
) -> jax.Array:
    """Training-time causal attention with an optional left ``window``."""
    t = q.shape[1]
    local = None if window is None else (window, 0)
    if _use_cudnn(q.dtype):
        try:
            return jax.nn.dot_product_attention(
                q, k, v, is_causal=True, local_window_size=local, implementation="cudnn"
            )
        except Exception:  # unsupported shape/version: fall back to XLA
            pass
    if jax.default_backend() == "cpu" and t > BLOCK:
        return blocked_causal_attention(q, k, v, window, BLOCK if window is None else WINDOW_BLOCK)
    return jax.nn.dot_product_attention(
        q, k, v, is_causal=True, local_window_size=local, implementation="xla"
    )


def masked_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """Attention under an explicit boolean ``mask`` broadcastable to ``[B, H, T, S]`` (decode)."""
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="xla")
