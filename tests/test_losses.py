"""Chunked cross-entropy equals the full one (fp32, 1e-5) with its gradient; weights and −1 targets;
remat leaves loss and gradient unchanged; blocked causal attention equals XLA's (windows too)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from nanochat_tui.config.schema import ModelConfig
from nanochat_tui.jax_engine.attention import blocked_causal_attention
from nanochat_tui.jax_engine.model import GPT, loss_fn, loss_sum, token_losses


def cfg(**kw) -> ModelConfig:
    base = dict(depth=2, aspect_ratio=64, head_dim=32, sequence_len=64, vocab_size=300)
    base.update(kw)
    return ModelConfig(**base)


def randomized(model: GPT, scale: float = 0.3) -> GPT:
    leaves, treedef = jax.tree.flatten(nnx.state(model, nnx.Param))
    keys = jax.random.split(jax.random.key(1), len(leaves))
    new = [
        jax.random.normal(k, x.shape, x.dtype) * scale for k, x in zip(keys, leaves, strict=True)
    ]
    nnx.update(model, jax.tree.unflatten(treedef, new))
    return model


def full_ce_sum(model, x, y, w):
    """Reference: the full [B,T,V] logits and optax's cross-entropy."""
    logits = model(x)
    valid = y >= 0
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, jnp.where(valid, y, 0))
    return jnp.sum(jnp.where(valid, ce, 0.0) * w)


def data(b=3, t=40):
    x = jax.random.randint(jax.random.key(0), (b, t), 0, 300, jnp.int32)
    y = jax.random.randint(jax.random.key(1), (b, t), 0, 300, jnp.int32)
    y = y.at[0, 5:9].set(-1).at[2, 30:].set(-1)
    w = jax.random.uniform(jax.random.key(2), (b, t))
    return x, y, w


CASES = [(r, c, 15.0) for r in ("nanochat-2025", "nanochat-2026") for c in (16, 50, 0)]


# 120 tokens: exact chunks, a padded tail, off; soft-cap 0 takes the max-shift path
@pytest.mark.parametrize(("recipe", "chunk", "softcap"), [*CASES, ("nanochat-2026", 50, 0.0)])
def test_chunked_ce_and_gradient_equal_the_full_ce(recipe, chunk, softcap):
    model = randomized(
        GPT(cfg(loss_chunk=chunk, recipe=recipe, softcap=softcap), rngs=nnx.Rngs(0)), 0.3
    )
    x, y, w = data()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def chunked(p):
        return loss_sum(nnx.merge(graphdef, p, rest), x, y, w)[0]

    def full(p):
        return full_ce_sum(nnx.merge(graphdef, p, rest), x, y, w)

    a, ga = jax.jit(jax.value_and_grad(chunked))(params)
    b, gb = jax.jit(jax.value_and_grad(full))(params)
    np.testing.assert_allclose(a, b, rtol=1e-5)
    # 1e-5 relative to the gradient's scale (the summation order differs between the two; some
    # scalar gradients are near-zero sums of cancelling terms)
    scale = max(float(jnp.abs(g).max()) for g in jax.tree.leaves(gb))
    jax.tree.map(
        lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-5 * scale), ga, gb
    )
    _, count = loss_sum(model, x, y, w)
    np.testing.assert_allclose(count, jnp.sum(w * (y >= 0)), rtol=1e-6)


def test_token_losses_and_loss_fn_chunked():
    model = randomized(GPT(cfg(loss_chunk=16), rngs=nnx.Rngs(0)))
    x, y, _ = data()
    tl = nnx.jit(token_losses)(model, x, y)
    ref = full_ce_sum(model, x, y, jnp.ones(y.shape)) / jnp.sum(y >= 0)
    assert tl.shape == y.shape and float(tl[0, 5:9].max()) == 0.0
    np.testing.assert_allclose(float(nnx.jit(loss_fn)(model, x, y)), float(ref), rtol=1e-5)
    np.testing.assert_allclose(float(tl.sum() / jnp.sum(y >= 0)), float(ref), rtol=1e-5)


def test_chunked_ce_never_builds_full_logits():
    """The chunked gradient saves at least two fp32 [B, T, V] buffers (logits, their gradient)."""
    model = GPT(cfg(loss_chunk=32, vocab_size=4096), rngs=nnx.Rngs(0))
    x = jnp.zeros((8, 64), jnp.int32)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def grad_of(p, chunked):
        if chunked:
            return jax.grad(lambda q: loss_fn(nnx.merge(graphdef, q, rest), x, x))(p)
        return jax.grad(lambda q: full_ce_sum(nnx.merge(graphdef, q, rest), x, x, 1.0))(p)

    def temp(chunked):
        c = jax.jit(lambda p: grad_of(p, chunked)).lower(params).compile()
        return c.memory_analysis().temp_size_in_bytes

    full_logits = 8 * 64 * 4096 * 4
    assert temp(False) - temp(True) > 2 * full_logits


def test_remat_keeps_loss_and_gradient():
    x, y, _ = data()
    out = []
    for remat in (False, True):
        model = randomized(GPT(cfg(remat=remat, recipe="nanochat-2026"), rngs=nnx.Rngs(0)))
        out.append(nnx.jit(nnx.value_and_grad(loss_fn))(model, x, y))
    np.testing.assert_allclose(out[0][0], out[1][0], rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), out[0][1], out[1][1]
    )


@pytest.mark.parametrize("window", [None, 40, 130])
@pytest.mark.parametrize("kv", [4, 2])
def test_blocked_attention_matches_xla(window, kv):
    b, t, h, d = 2, 300, 4, 16
    keys = jax.random.split(jax.random.key(0), 3)
    q = jax.random.normal(keys[0], (b, t, h, d))
    k = jax.random.normal(keys[1], (b, t, kv, d))
    v = jax.random.normal(keys[2], (b, t, kv, d))
    local = None if window is None else (window, 0)
    ref = jax.nn.dot_product_attention(q, k, v, is_causal=True, local_window_size=local)
    out = blocked_causal_attention(q, k, v, window, block=64)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    gref = jax.grad(
        lambda q: jnp.sum(
            jnp.sin(jax.nn.dot_product_attention(q, k, v, is_causal=True, local_window_size=local))
        )
    )(q)
    gout = jax.grad(lambda q: jnp.sum(jnp.sin(blocked_causal_attention(q, k, v, window, 64))))(q)
    np.testing.assert_allclose(gout, gref, rtol=1e-4, atol=1e-5)
