"""One decode step for many sequences at once, each at its own position, over a slot cache.

``GPT.decode`` advances a batch whose rows share one position. Serving needs each row (slot) at its
own position, and on CPU the step's cost is dominated by reading the cache, so this step reads only
the live part of it: the first ``rows`` slots and the first ``length`` positions (both rounded up by
the engine, so a handful of shapes compile). Keys/values live in one array per layer, written in
place (the engine donates the cache), rather than one stacked array that would be copied every step.

It wires the model's own sub-modules (smear, ``block.ve``, ``attn.qkv`` with its rotary base and QK
scale, ``c_proj``, ``mlp``, the residual/x0 scalars, backout, ``head``) as ``GPT.decode`` does, with
each layer's sliding window applied per row, so every switch of both recipes is served.
Smear needs the previous token's embedding: the engine passes the previous token id per row (the
last prompt token on the first step) instead of caching the embedding. tests/test_serve_engine.py
pins the logits to ``GPT.decode``'s for both recipes.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from nanochat_tui.jax_engine.attention import masked_attention
from nanochat_tui.jax_engine.model import GPT, KVCache, dense, norm


class SlotCache(NamedTuple):
    """Per-layer keys/values: ``k[i]``, ``v[i]`` are ``[slots, n_kv_head, max_len, head_dim]``. Head
    before position: the attention reads a step's live slice per head without the transposed
    copy that XLA:CPU made of a position-major slice (a fifth of an 8-row d4 step's op time; the
    d4 step got ~10% faster at 1 row and 15-20% at 32, within noise at 8; docs/serve.md)."""

    k: tuple[jax.Array, ...]
    v: tuple[jax.Array, ...]


def init_slot_cache(model: GPT, slots: int, max_len: int) -> SlotCache:
    """An empty cache; each layer shaped by its own block (blocks may differ in kv heads)."""
    shapes = [(slots, b.attn.n_kv_head, max_len, b.attn.head_dim) for b in model.blocks]
    return SlotCache(
        tuple(jnp.zeros(shape, model.dtype) for shape in shapes),
        tuple(jnp.zeros(shape, model.dtype) for shape in shapes),
    )


def write_slots(cache: SlotCache, slots: jax.Array, rows: KVCache) -> SlotCache:
    """Copy prefilled sequences (a ``KVCache``) into ``slots[A]``, positions ``0..T-1``. A slot
    listed twice must come with identical rows (the engine's padding)."""
    t = rows.k[0].shape[1]  # rows.k[i]: [A, T, kv, hd]

    def put(layers: tuple[jax.Array, ...], new: jax.Array) -> tuple[jax.Array, ...]:
        return tuple(
            layer.at[slots, :, :t].set(new[i].swapaxes(1, 2).astype(layer.dtype))
            for i, layer in enumerate(layers)
        )

    return SlotCache(put(cache.k, rows.k), put(cache.v, rows.v))


def _embed(model: GPT, toks: jax.Array, prev: jax.Array) -> jax.Array:
    """Normed (and smeared) embeddings ``[R, 1, d]`` of one token per row; ``prev[R]`` is each
    row's previous token (decode rows always have one: a prompt holds at least one token)."""
    x = norm(model.wte(toks[:, None]).astype(model.dtype))
    if model.smear_gate is None:
        return x
    x_prev = norm(model.wte(prev[:, None]).astype(model.dtype))
    return model._smear(x, x_prev, jnp.zeros((1,), bool))


def decode_rows(
    model: GPT,
    toks: jax.Array,
    prev: jax.Array,
    cache: SlotCache,
    pos: jax.Array,
    length: int,
) -> tuple[jax.Array, SlotCache]:
    """Logits ``float32[R, V]`` for one new token per row ``toks[R]`` at positions ``pos[R]``
    (slots ``0..R-1``; every ``pos`` < ``length``; ``prev[R]`` the token before each), and the
    cache with their keys/values written."""
    rows = toks.shape[0]
    at = jnp.arange(rows)
    x = _embed(model, toks, prev)  # [R, 1, d]
    x0, x_backout = x, None
    k_pos = jnp.arange(length)[None, :]
    causal = k_pos <= pos[:, None]  # [R, length]
    ks, vs = [], []
    for i, block in enumerate(model.blocks):
        if model.resid_lambdas is not None:
            r = model.resid_lambdas[...][i].astype(x.dtype)
            x = r * x + model.x0_lambdas[...][i].astype(x.dtype) * x0
        attn = block.attn
        ve = block.ve(toks[:, None], x.dtype)  # [R, 1, kv·hd] or None

        def qkv(h, p, e, attn=attn):
            return attn.qkv(h[None], p[None], None if e is None else e[None])

        q, k, v = jax.vmap(qkv)(norm(x), pos, ve)
        k_all = cache.k[i].at[at, :, pos].set(k[:, 0, 0].astype(cache.k[i].dtype))
        v_all = cache.v[i].at[at, :, pos].set(v[:, 0, 0].astype(cache.v[i].dtype))
        ks.append(k_all)
        vs.append(v_all)
        mask = causal
        if attn.window is not None:
            mask = mask & (pos[:, None] - k_pos <= attn.window)
        k_live = k_all[:rows, :, :length].swapaxes(1, 2).astype(q.dtype)
        v_live = v_all[:rows, :, :length].swapaxes(1, 2).astype(q.dtype)
        y = masked_attention(q[:, 0], k_live, v_live, mask[:, None, None, :])
        x = x + dense(attn.c_proj, y.reshape(rows, 1, -1))
        x = x + block.mlp(norm(x))
        if i == len(model.blocks) // 2:
            x_backout = x
    if model.backout_lambda is not None:
        x = x - model.backout_lambda[...].astype(x.dtype) * x_backout
    return model.head(norm(x))[:, -1], SlotCache(tuple(ks), tuple(vs))


def mismatch(model: GPT, steps: int = 3) -> float:
    """Largest logit difference between ``decode_rows`` and ``GPT.decode`` over ``steps`` tokens
    decoded after a short prompt: ~0 when this step wires the model as ``GPT.decode`` does (the
    engine checks it once at start, so a model this step would serve wrongly is refused)."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def check(state) -> jax.Array:
        m = nnx.merge(graphdef, state)
        n = 5 + steps
        ids = (jnp.arange(1, n + 1, dtype=jnp.int32) * 7 % m.config.vocab_size)[None]
        want, _ = m.decode(ids, m.init_cache(1, n), 0)
        _, row = m.decode(ids[:, :5], m.init_cache(1, 5), 0)
        cache = write_slots(init_slot_cache(m, 1, n), jnp.zeros((1,), jnp.int32), row)
        worst = jnp.zeros((), jnp.float32)
        for p in range(5, n):
            got, cache = decode_rows(
                m, ids[0, p : p + 1], ids[0, p - 1 : p], cache, jnp.array([p]), n
            )
            worst = jnp.maximum(worst, jnp.max(jnp.abs(got[0] - want[0, p])))
        return worst

    return float(check(state))
