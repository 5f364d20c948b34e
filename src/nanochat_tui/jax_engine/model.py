"""The nanochat GPT in Flax NNX, readable top to bottom (after karpathy/nanochat ``nanochat/gpt.py``).

- token embedding → parameter-free RMSNorm → ``depth`` blocks → RMSNorm → lm head → soft-cap
- block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``
- attention: rotary positions (no learned positions), QK-norm, GQA/MQA via ``n_kv_head``, causal
- MLP: 4× width, ReLU², no biases anywhere; embedding and unembedding are untied
- init: linear std = 1/√fan_in · min(1, √(fan_out/fan_in)), embedding std 1, and the lm head and
  both output projections (attn ``c_proj``, mlp ``c_proj``) start at zero

Parameters are fp32; ``dtype`` is the compute dtype (bf16 on GPU/TPU, fp32 on CPU). Logits are
always returned in fp32. ``decode`` runs the same blocks against a fixed-size KV cache.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from nanochat_tui.config.schema import ModelConfig


class KVCache(NamedTuple):
    """Keys/values of every layer: ``k``, ``v`` are ``[depth, B, max_len, n_kv_head, head_dim]``."""

    k: jax.Array
    v: jax.Array


def norm(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Parameter-free RMSNorm over the last axis (computed in fp32, returned in x's dtype)."""
    xf = x.astype(jnp.float32)
    y = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + eps)
    return y.astype(x.dtype)


def rotary(positions: jax.Array, head_dim: int, base: float) -> tuple[jax.Array, jax.Array]:
    """cos/sin tables ``[T, head_dim/2]`` for integer ``positions`` ``[T]``."""
    inv_freq = 1.0 / (base ** (jnp.arange(0, head_dim, 2, dtype=jnp.float32) / head_dim))
    freqs = positions.astype(jnp.float32)[:, None] * inv_freq[None, :]
    return jnp.cos(freqs), jnp.sin(freqs)


def apply_rotary(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotate halves of ``x`` ``[B, T, H, D]`` (nanochat's convention)."""
    d = x.shape[-1] // 2
    x1, x2 = x[..., :d], x[..., d:]
    cos = cos[None, :, None, :].astype(x.dtype)
    sin = sin[None, :, None, :].astype(x.dtype)
    return jnp.concatenate([x1 * cos + x2 * sin, x2 * cos - x1 * sin], axis=-1)


def _linear(d_in: int, d_out: int, *, zero: bool, dtype, rngs: nnx.Rngs) -> nnx.Linear:
    """A bias-free linear layer with nanochat's init (or zeros)."""
    std = 1.0 / math.sqrt(d_in) * min(1.0, math.sqrt(d_out / d_in))
    init = nnx.initializers.zeros_init() if zero else nnx.initializers.normal(std)
    return nnx.Linear(
        d_in,
        d_out,
        use_bias=False,
        kernel_init=init,
        dtype=dtype,
        param_dtype=jnp.float32,
        rngs=rngs,
    )


def dense(layer: nnx.Linear, x: jax.Array) -> jax.Array:
    """Apply ``layer`` on a 2-D view of ``x``: XLA:CPU's weight-gradient matmul is ~3× faster
    contracting one flattened batch axis than (B, T)."""
    return layer(x.reshape(-1, x.shape[-1])).reshape(*x.shape[:-1], -1)


def _use_cudnn(dtype) -> bool:
    return jax.default_backend() == "gpu" and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None) -> jax.Array:
    """Scaled dot-product attention; causal when ``mask`` is None (cuDNN on NVIDIA when it fits)."""
    if mask is None and _use_cudnn(q.dtype):
        try:
            return jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="cudnn")
        except Exception:  # unsupported shape/version: fall back to XLA
            pass
    if mask is None:
        return jax.nn.dot_product_attention(q, k, v, is_causal=True, implementation="xla")
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="xla")


class CausalSelfAttention(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, dtype=jnp.float32) -> None:
        d, hd = cfg.model_dim, cfg.head_dim
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.kv_heads, hd
        self.rope_base = cfg.rope_base
        self.c_q = _linear(d, self.n_head * hd, zero=False, dtype=dtype, rngs=rngs)
        self.c_k = _linear(d, self.n_kv_head * hd, zero=False, dtype=dtype, rngs=rngs)
        self.c_v = _linear(d, self.n_kv_head * hd, zero=False, dtype=dtype, rngs=rngs)
        self.c_proj = _linear(self.n_head * hd, d, zero=True, dtype=dtype, rngs=rngs)

    def qkv(self, x: jax.Array, positions: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Project, rotate and QK-normalise: q ``[B,T,H,D]``, k/v ``[B,T,KV,D]``."""
        b, t, _ = x.shape
        q = dense(self.c_q, x).reshape(b, t, self.n_head, self.head_dim)
        k = dense(self.c_k, x).reshape(b, t, self.n_kv_head, self.head_dim)
        v = dense(self.c_v, x).reshape(b, t, self.n_kv_head, self.head_dim)
        cos, sin = rotary(positions, self.head_dim, self.rope_base)
        q, k = norm(apply_rotary(q, cos, sin)), norm(apply_rotary(k, cos, sin))
        return q, k, v

    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, _ = x.shape
        q, k, v = self.qkv(x, jnp.arange(t))
        y = attention(q, k, v, None)
        return dense(self.c_proj, y.reshape(b, t, -1))

    def decode(
        self, x: jax.Array, k_cache: jax.Array, v_cache: jax.Array, pos: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Attend ``t`` new tokens at ``pos..pos+t-1`` to the cache; returns (y, k_cache, v_cache)."""
        b, t, _ = x.shape
        q_pos = pos + jnp.arange(t)
        q, k, v = self.qkv(x, q_pos)
        k_cache = jax.lax.dynamic_update_slice(k_cache, k.astype(k_cache.dtype), (0, pos, 0, 0))
        v_cache = jax.lax.dynamic_update_slice(v_cache, v.astype(v_cache.dtype), (0, pos, 0, 0))
        mask = jnp.arange(k_cache.shape[1])[None, :] <= q_pos[:, None]  # [t, max_len]
        y = attention(q, k_cache.astype(q.dtype), v_cache.astype(q.dtype), mask[None, None])
        return dense(self.c_proj, y.reshape(b, t, -1)), k_cache, v_cache


class MLP(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, dtype=jnp.float32) -> None:
        d = cfg.model_dim
        self.c_fc = _linear(d, 4 * d, zero=False, dtype=dtype, rngs=rngs)
        self.c_proj = _linear(4 * d, d, zero=True, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return dense(self.c_proj, jnp.square(jax.nn.relu(dense(self.c_fc, x))))


class Block(nnx.Module):
    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, dtype=jnp.float32) -> None:
        self.attn = CausalSelfAttention(cfg, rngs=rngs, dtype=dtype)
        self.mlp = MLP(cfg, rngs=rngs, dtype=dtype)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attn(norm(x))
        return x + self.mlp(norm(x))


class GPT(nnx.Module):
    """nanochat GPT. ``GPT(cfg, rngs=nnx.Rngs(seed), dtype=jnp.bfloat16)``; params stay fp32."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs, dtype=jnp.float32) -> None:
        self.config = cfg
        self.dtype = dtype
        d = cfg.model_dim
        self.wte = nnx.Embed(
            cfg.vocab_size,
            d,
            embedding_init=nnx.initializers.normal(1.0),
            dtype=dtype,
            param_dtype=jnp.float32,
            rngs=rngs,
        )
        self.blocks = nnx.List([Block(cfg, rngs=rngs, dtype=dtype) for _ in range(cfg.depth)])
        self.lm_head = _linear(d, cfg.vocab_size, zero=True, dtype=dtype, rngs=rngs)

    def _logits(self, x: jax.Array) -> jax.Array:
        logits = dense(self.lm_head, norm(x)).astype(jnp.float32)
        c = self.config.softcap
        return c * jnp.tanh(logits / c) if c > 0 else logits

    def __call__(self, idx: jax.Array) -> jax.Array:
        """Logits ``float32[B, T, V]`` for token ids ``int32[B, T]`` (causal)."""
        x = norm(self.wte(idx).astype(self.dtype))
        for block in self.blocks:
            x = block(x)
        return self._logits(x)

    def init_cache(self, batch: int, max_len: int) -> KVCache:
        """An empty KV cache for ``batch`` sequences of up to ``max_len`` tokens."""
        c = self.config
        shape = (c.depth, batch, max_len, c.kv_heads, c.head_dim)
        return KVCache(jnp.zeros(shape, self.dtype), jnp.zeros(shape, self.dtype))

    def decode(
        self, idx: jax.Array, cache: KVCache, pos: int | jax.Array
    ) -> tuple[jax.Array, KVCache]:
        """Logits for ``t`` new tokens ``idx[B, t]`` placed at ``pos``, and the updated cache."""
        pos = jnp.asarray(pos, jnp.int32)
        x = norm(self.wte(idx).astype(self.dtype))
        ks, vs = [], []
        for i, block in enumerate(self.blocks):
            y, k, v = block.attn.decode(norm(x), cache.k[i], cache.v[i], pos)
            x = x + y
            x = x + block.mlp(norm(x))
            ks.append(k)
            vs.append(v)
        return self._logits(x), KVCache(jnp.stack(ks), jnp.stack(vs))


def token_losses(model: GPT, idx: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-token cross-entropy ``float32[B, T]`` (nats); positions with target −1 give 0."""
    logits = model(idx)
    valid = targets >= 0
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(valid, targets, 0))
    return jnp.where(valid, ce, 0.0)


def loss_fn(model: GPT, idx: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean cross-entropy over the tokens whose target is not −1."""
    losses = token_losses(model, idx, targets)
    count = jnp.maximum(jnp.sum(targets >= 0), 1)
    return jnp.sum(losses) / count
