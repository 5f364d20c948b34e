"""nanochat GPT in Flax NNX: shapes, causality, GQA, softcap, init, param count, KV-cache decode."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nanochat_tui.config.estimates import num_params
from nanochat_tui.config.schema import ModelConfig
from nanochat_tui.jax_engine.model import GPT, loss_fn, token_losses


def tiny(**kw) -> ModelConfig:
    base = dict(depth=2, aspect_ratio=64, head_dim=32, sequence_len=64, vocab_size=300)
    base.update(kw)
    return ModelConfig(**base)


def randomized(model: GPT, scale: float = 0.3, seed: int = 1) -> GPT:
    """Give every parameter (including the zero-init ones) random values."""
    leaves, treedef = jax.tree.flatten(nnx.state(model, nnx.Param))
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    new = [
        jax.random.normal(k, x.shape, x.dtype) * scale for k, x in zip(keys, leaves, strict=True)
    ]
    nnx.update(model, jax.tree.unflatten(treedef, new))
    return model


@nnx.jit
def fwd(model: GPT, x: jax.Array) -> jax.Array:
    return model(x)


@nnx.jit
def dec(model: GPT, x: jax.Array, cache, pos):
    return model.decode(x, cache, pos)


def ids(b: int, t: int, seed: int = 0, v: int = 300) -> jax.Array:
    return jax.random.randint(jax.random.key(seed), (b, t), 0, v, jnp.int32)


def test_forward_shape_dtype_and_initial_loss():
    cfg = tiny()
    model = GPT(cfg, rngs=nnx.Rngs(0))
    logits = fwd(model, ids(2, 16))
    assert logits.shape == (2, 16, 300) and logits.dtype == jnp.float32
    # lm head starts at zero: uniform prediction, loss = ln V
    assert float(nnx.jit(loss_fn)(model, ids(2, 16), ids(2, 16, 1))) == pytest.approx(
        np.log(300), rel=1e-5
    )


def test_causal_masking():
    model = randomized(GPT(tiny(), rngs=nnx.Rngs(0)))
    x = ids(1, 32)
    y = x.at[0, 20:].set((x[0, 20:] + 7) % 300)
    a, b = fwd(model, x), fwd(model, y)
    np.testing.assert_allclose(a[0, :20], b[0, :20], rtol=1e-5, atol=1e-5)
    assert not np.allclose(a[0, 20:], b[0, 20:])


@pytest.mark.parametrize("kv", [1, 2])
def test_gqa_shapes(kv):
    cfg = tiny(n_kv_head=kv)
    assert cfg.n_head == 4
    model = randomized(GPT(cfg, rngs=nnx.Rngs(0)))
    assert model.blocks[0].attn.c_k.kernel.shape == (128, kv * 32)
    assert model.blocks[0].attn.c_q.kernel.shape == (128, 4 * 32)
    out = fwd(model, ids(2, 8))
    assert out.shape == (2, 8, 300) and bool(jnp.all(jnp.isfinite(out)))


def test_softcap_bounds_logits():
    model = randomized(GPT(tiny(softcap=5.0), rngs=nnx.Rngs(0)), scale=5.0)
    logits = fwd(model, ids(2, 16))
    assert float(jnp.max(jnp.abs(logits))) <= 5.0
    uncapped = randomized(GPT(tiny(softcap=0.0), rngs=nnx.Rngs(0)), scale=5.0)
    uncapped = fwd(uncapped, ids(2, 16))
    assert float(jnp.max(jnp.abs(uncapped))) > 5.0


def test_zero_init_output_projections():
    model = GPT(tiny(), rngs=nnx.Rngs(0))
    for block in model.blocks:
        assert float(jnp.abs(block.attn.c_proj.kernel[...]).max()) == 0.0
        assert float(jnp.abs(block.mlp.c_proj.kernel[...]).max()) == 0.0
        assert float(jnp.std(block.attn.c_q.kernel[...])) > 0
        assert float(jnp.std(block.mlp.c_fc.kernel[...])) > 0
    assert float(jnp.std(model.wte.embedding[...])) == pytest.approx(1.0, rel=0.05)
    assert model.wte.embedding[...].dtype == jnp.float32


@pytest.mark.parametrize("kw", [{}, {"n_kv_head": 1}, {"depth": 1, "vocab_size": 512}])
def test_param_count_matches_estimate(kw):
    cfg = tiny(**kw)
    model = GPT(cfg, rngs=nnx.Rngs(0))
    n = sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert n == num_params(cfg)


@pytest.mark.parametrize("kv", [4, 2])
def test_kv_cache_decode_matches_forward(kv):
    model = randomized(GPT(tiny(n_kv_head=kv), rngs=nnx.Rngs(0)))
    x = ids(2, 24)
    full = fwd(model, x)
    cache = model.init_cache(2, 32)
    out, cache = dec(model, x[:, :10], cache, 0)  # prefill 10
    parts = [out]
    for p in range(10, 24, 7):  # then chunks of 7
        out, cache = dec(model, x[:, p : p + 7], cache, p)
        parts.append(out)
    np.testing.assert_allclose(jnp.concatenate(parts, axis=1), full, rtol=1e-4, atol=1e-4)


def test_kv_cache_is_one_array_per_layer_before_and_after_a_step():
    """A stacked [depth, ...] cache was rebuilt (copied whole) by every decode step; each layer's
    own array is updated in place (benchmarks/chat_decode.py times the difference)."""
    model = GPT(tiny(n_kv_head=2), rngs=nnx.Rngs(0))
    cfg = model.config
    cache = model.init_cache(2, 32)
    _, after = dec(model, ids(2, 5), cache, 0)
    for c in (cache, after):
        assert isinstance(c.k, tuple) and isinstance(c.v, tuple)
        assert len(c.k) == len(c.v) == cfg.depth
        assert {a.shape for a in (*c.k, *c.v)} == {(2, 32, 2, cfg.head_dim)}


def test_token_losses_ignore_minus_one():
    model = randomized(GPT(tiny(), rngs=nnx.Rngs(0)))
    x, y = ids(2, 16), ids(2, 16, 5)
    masked = y.at[:, 8:].set(-1)
    tl = token_losses(model, x, masked)
    assert tl.shape == (2, 16) and float(jnp.abs(tl[:, 8:]).max()) == 0.0
    assert float(loss_fn(model, x, masked)) == pytest.approx(float(tl[:, :8].mean()), rel=1e-5)
    assert float(loss_fn(model, x, y)) == pytest.approx(
        float(token_losses(model, x, y).mean()), rel=1e-5
    )


def test_bf16_compute_keeps_fp32_params_and_logits():
    model = randomized(GPT(tiny(), rngs=nnx.Rngs(0), dtype=jnp.bfloat16))
    assert model.blocks[0].attn.c_q.kernel[...].dtype == jnp.float32
    logits = fwd(model, ids(1, 8))
    assert logits.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(logits)))


@pytest.mark.parametrize("recipe", ["nanochat-2025", "nanochat-2026"])
def test_scan_layers_matches_the_unrolled_blocks(recipe):
    """model.scan_layers changes how XLA sees the blocks, not the maths: same logits and gradients
    (fp32), same parameter tree (checkpoints load either way). Depth 8: the 2026 blocks repeat with
    period 4 (SSSL windows, value embeddings every other layer) and backout reads layer 4."""
    from nanochat_tui.jax_engine.model import layer_runs

    base = dict(
        depth=8, aspect_ratio=8, head_dim=32, sequence_len=32, vocab_size=512, short_window=8
    )
    plain = GPT(ModelConfig(**base, recipe=recipe), rngs=nnx.Rngs(0))
    scanned = GPT(ModelConfig(**base, recipe=recipe, scan_layers=True), rngs=nnx.Rngs(0))
    for model in (plain, scanned):  # non-zero output projections so every weight gets a gradient
        for i, block in enumerate(model.blocks):
            for layer in (block.attn.c_proj, block.mlp.c_proj):
                key = jax.random.key(i)
                layer.kernel[...] = 0.05 * jax.random.normal(key, layer.kernel[...].shape)
        model.lm_head.kernel[...] = 0.05 * jax.random.normal(
            jax.random.key(9), model.lm_head.kernel[...].shape
        )
    assert jax.tree.structure(nnx.state(plain)) == jax.tree.structure(nnx.state(scanned))
    idx = jax.random.randint(jax.random.key(1), (2, 32), 0, 512)
    np.testing.assert_allclose(plain(idx), scanned(idx), atol=2e-5)
    grads = [nnx.grad(lambda m: jnp.mean(m(idx) ** 2))(m) for m in (plain, scanned)]
    leaves = [jax.tree.leaves(nnx.state(g)) for g in grads]
    for a, b in zip(*leaves, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    runs = layer_runs(scanned.blocks)
    if recipe == "nanochat-2025":
        assert runs == [(0, 8, 1)]  # identical blocks: one scan, one block per step
    else:
        assert runs == [(0, 8, 4)]  # one scan of two steps of four blocks; backout inside it


def test_periodic_runs_cover_the_blocks_greedily():
    """Runs of the layer scan: the period covering most blocks wins (smallest on a tie), a run
    repeats at least twice, leftovers are single blocks; together they cover every block once."""
    from nanochat_tui.jax_engine.model import periodic_runs

    assert periodic_runs(list("AAAA")) == [(0, 4, 1)]
    assert periodic_runs(list("ABABAB")) == [(0, 6, 2)]
    assert periodic_runs(list("SSSLSSSL")) == [(0, 8, 4)]
    assert periodic_runs(list("AAABABABC")) == [(0, 3, 1), (3, 7, 2), (7, 8, 1), (8, 9, 1)]
    assert periodic_runs(list("ABCD")) == [(0, 1, 1), (1, 2, 1), (2, 3, 1), (3, 4, 1)]
    assert periodic_runs(list("ABCABCAB"), max_period=2) == [(i, i + 1, 1) for i in range(8)]
    assert periodic_runs([]) == []
