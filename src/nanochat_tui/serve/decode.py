"""One decode step for many sequences at once, each at its own position, over a slot cache.

``GPT.decode`` advances a batch whose rows share one position. Serving needs each row (slot) at its
own position, and on CPU the step's cost is dominated by reading the cache, so this step reads only
the live part of it: the first ``rows`` slots and the first ``length`` positions (both rounded up by
the engine, so a handful of shapes compile). Keys/values live in one array per layer, written in
place (the engine donates the cache), rather than one stacked array that would be copied every step.

It wires the model's own sub-modules (``attn.qkv``, ``c_proj``, ``mlp``, ``head``) exactly as
``GPT.decode`` does for the nanochat-2025 recipe; tests/test_serve_engine.py pins its logits to
``GPT.decode``'s.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from nanochat_tui.jax_engine.attention import masked_attention
from nanochat_tui.jax_engine.model import GPT, KVCache, dense, norm


class SlotCache(NamedTuple):
    """Per-layer keys/values: ``k[i]``, ``v[i]`` are ``[slots, max_len, n_kv_head, head_dim]``."""

    k: tuple[jax.Array, ...]
    v: tuple[jax.Array, ...]


def init_slot_cache(model: GPT, slots: int, max_len: int) -> SlotCache:
    c = model.config
    shape = (slots, max_len, c.kv_heads, c.head_dim)
    return SlotCache(
        tuple(jnp.zeros(shape, model.dtype) for _ in range(c.depth)),
        tuple(jnp.zeros(shape, model.dtype) for _ in range(c.depth)),
    )


def write_slots(cache: SlotCache, slots: jax.Array, rows: KVCache) -> SlotCache:
    """Copy prefilled sequences (a ``KVCache`` ``[depth, A, T, ...]``) into ``slots[A]``, positions
    ``0..T-1``. A slot listed twice must come with identical rows (the engine's padding)."""
    t = rows.k.shape[2]

    def put(layers: tuple[jax.Array, ...], new: jax.Array) -> tuple[jax.Array, ...]:
        return tuple(
            layer.at[slots, :t].set(new[i].astype(layer.dtype)) for i, layer in enumerate(layers)
        )

    return SlotCache(put(cache.k, rows.k), put(cache.v, rows.v))


def decode_rows(
    model: GPT, toks: jax.Array, cache: SlotCache, pos: jax.Array, length: int
) -> tuple[jax.Array, SlotCache]:
    """Logits ``float32[R, V]`` for one new token per row ``toks[R]`` at positions ``pos[R]``
    (slots ``0..R-1``; every ``pos`` < ``length``), and the cache with their keys/values written."""
    rows = toks.shape[0]
    at = jnp.arange(rows)
    x = norm(model.wte(toks[:, None]).astype(model.dtype))  # [R, 1, d]
    mask = (jnp.arange(length)[None, :] <= pos[:, None])[:, None, None, :]  # [R, 1, 1, length]
    ks, vs = [], []
    for i, block in enumerate(model.blocks):
        attn = block.attn
        q, k, v = jax.vmap(lambda h, p, attn=attn: attn.qkv(h[None], p[None], None))(norm(x), pos)
        k_all = cache.k[i].at[at, pos].set(k[:, 0, 0].astype(cache.k[i].dtype))
        v_all = cache.v[i].at[at, pos].set(v[:, 0, 0].astype(cache.v[i].dtype))
        ks.append(k_all)
        vs.append(v_all)
        k_live = k_all[:rows, :length].astype(q.dtype)
        v_live = v_all[:rows, :length].astype(q.dtype)
        y = masked_attention(q[:, 0], k_live, v_live, mask)
        x = x + dense(attn.c_proj, y.reshape(rows, 1, -1))
        x = x + block.mlp(norm(x))
    return model.head(norm(x))[:, -1], SlotCache(tuple(ks), tuple(vs))


def mismatch(model: GPT) -> float:
    """Largest logit difference between ``decode_rows`` and ``GPT.decode`` on a short sequence:
    ~0 when this step wires the model as ``GPT.decode`` does, large for a model whose recipe adds
    pieces this step does not know (the server then refuses it)."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def check(state) -> jax.Array:
        m = nnx.merge(graphdef, state)
        ids = (jnp.arange(1, 6, dtype=jnp.int32) * 7 % m.config.vocab_size)[None]
        want, _ = m.decode(ids, m.init_cache(1, 8), 0)
        _, row = m.decode(ids[:, :4], m.init_cache(1, 4), 0)
        cache = write_slots(init_slot_cache(m, 1, 8), jnp.zeros((1,), jnp.int32), row)
        got, _ = decode_rows(m, ids[0, 4:], cache, jnp.array([4], jnp.int32), 8)
        return jnp.max(jnp.abs(got[0] - want[0, 4]))

    return float(check(state))
