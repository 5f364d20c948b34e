"""nanochat-2025 stays bit-identical; each nanochat-2026 switch changes the forward pass and can be
turned off alone; decode matches forward with every switch on; padded vocab never reaches logits."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nanochat_tui.config.estimates import num_params
from nanochat_tui.config.recipes import DEFAULTS, switches
from nanochat_tui.config.schema import Config, ModelConfig
from nanochat_tui.jax_engine.model import GPT

REFERENCE = Path(__file__).parent / "data" / "model_2025_reference.npz"


def _names(path) -> str:
    return "/".join(str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path)


def flat_params(model: GPT) -> dict[str, jax.Array]:
    return {
        _names(p): v
        for p, v in jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]
    }


def randomized(model: GPT, scale: float = 0.3, seed: int = 3) -> GPT:
    leaves, treedef = jax.tree.flatten(nnx.state(model, nnx.Param))
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    new = [
        jax.random.normal(k, x.shape, x.dtype) * scale for k, x in zip(keys, leaves, strict=True)
    ]
    nnx.update(model, jax.tree.unflatten(treedef, new))
    return model


def copy_shared(src: GPT, dst: GPT) -> GPT:
    """Give ``dst`` the values of every parameter ``src`` has under the same path."""
    state = nnx.state(dst, nnx.Param)
    theirs = flat_params(src)
    leaves = jax.tree_util.tree_flatten_with_path(state)
    new = [theirs.get(_names(p), v) for p, v in leaves[0]]
    nnx.update(dst, jax.tree.unflatten(leaves[1], new))
    return dst


def cfg2026(**kw) -> ModelConfig:
    base = dict(
        depth=3,
        aspect_ratio=64,
        head_dim=32,
        n_kv_head=2,
        sequence_len=64,
        vocab_size=300,
        recipe="nanochat-2026",
        short_window=8,
    )
    base.update(kw)
    return ModelConfig(**base)


def ids(b: int, t: int, seed: int = 0, v: int = 300) -> jax.Array:
    return jax.random.randint(jax.random.key(seed), (b, t), 0, v, jnp.int32)


@nnx.jit
def fwd(model: GPT, x: jax.Array) -> jax.Array:
    return model(x)


def test_2025_is_bit_identical_to_the_recorded_model():
    """Logits and init recorded from the pre-recipe model on a fixed seed."""
    ref = np.load(REFERENCE)
    cfg = ModelConfig(
        depth=2, aspect_ratio=64, head_dim=32, sequence_len=64, vocab_size=300, n_kv_head=2
    )
    model = GPT(cfg, rngs=nnx.Rngs(7))
    for name, value in flat_params(model).items():
        a = np.asarray(value)
        np.testing.assert_array_equal(a[:4, :4] if a.ndim == 2 else a[:4], ref["init/" + name])
    assert len(flat_params(model)) == sum(k.startswith("init/") for k in ref.files)
    logits = np.asarray(randomized(model)(jnp.asarray(ref["x"])))
    np.testing.assert_array_equal(logits, ref["logits"])


def test_recipe_fills_only_empty_switches_and_explicit_wins():
    config = Config.model_validate(
        {
            "model": {"recipe": "nanochat-2026", "smear": False, "rope_base": 5000.0},
            "optim": {"warmdown_ratio": 0.3},
        }
    )
    s = switches(config)
    assert s["model.smear"] is False and s["model.rope_base"] == 5000.0
    assert s["model.value_embeds"] is True and s["model.window_pattern"] == "SSSL"
    assert s["optim.warmdown_ratio"] == 0.3 and s["optim.final_lr_frac"] == 0.05
    plain = switches(Config())
    assert all(plain[f"model.{k}"] == v[0] for k, v in DEFAULTS["model"].items())
    # the dump keeps switches empty, so a recipe change later still re-resolves them
    assert config.model.model_dump()["value_embeds"] is None


SWITCHES = [
    ("value_embeds", False),
    ("residual_scalars", False),
    ("smear", False),
    ("backout", False),
    ("window_pattern", "L"),
    ("rope_base", 10000.0),
    ("qk_scale", 1.0),
]


@pytest.mark.parametrize(("field", "off"), SWITCHES)
def test_each_2026_switch_changes_the_forward_and_turns_off_alone(field, off):
    full_cfg, ablated_cfg = cfg2026(), cfg2026(**{field: off})
    full_r, ablated_r = full_cfg.resolved(), ablated_cfg.resolved()
    changed = [k for k in DEFAULTS["model"] if getattr(full_r, k) != getattr(ablated_r, k)]
    assert changed == [field]
    full = randomized(GPT(full_cfg, rngs=nnx.Rngs(0)))
    ablated = copy_shared(full, GPT(ablated_cfg, rngs=nnx.Rngs(0)))
    x = ids(2, 32)
    a, b = fwd(full, x), fwd(ablated, x)
    assert bool(jnp.all(jnp.isfinite(a))) and bool(jnp.all(jnp.isfinite(b)))
    assert float(jnp.max(jnp.abs(a - b))) > 1e-3
    n = sum(v.size for v in flat_params(ablated).values())
    assert n == num_params(ablated_cfg)


def test_2026_init_and_param_count():
    cfg = cfg2026()
    model = GPT(cfg, rngs=nnx.Rngs(0))
    p = flat_params(model)
    assert sum(v.size for v in p.values()) == num_params(cfg)
    assert float(jnp.std(model.lm_head.kernel[...])) == pytest.approx(0.001, rel=0.1)
    assert float(jnp.std(model.wte.embedding[...])) == pytest.approx(0.8, rel=0.05)
    s = np.sqrt(3) / np.sqrt(cfg.model_dim)
    q = np.asarray(model.blocks[0].attn.c_q.kernel[...])
    assert q.max() <= s and q.min() >= -s and q.std() == pytest.approx(s / np.sqrt(3), rel=0.05)
    np.testing.assert_allclose(model.resid_lambdas[...], [1.15, 1.10, 1.05], rtol=1e-6)
    np.testing.assert_allclose(model.x0_lambdas[...], [0.20, 0.125, 0.05], rtol=1e-6)
    # value embeddings on alternating layers, the last always
    assert [b.value_embed is not None for b in model.blocks] == [True, False, True]
    # the 2025 init on the 2026 architecture: zero head, unit embedding
    old = GPT(cfg2026(init="nanochat-2025"), rngs=nnx.Rngs(0))
    assert float(jnp.abs(old.lm_head.kernel[...]).max()) == 0.0
    a, b = fwd(model, ids(1, 16)), fwd(old, ids(1, 16))
    assert not np.allclose(a, b)


def test_padded_vocab_is_cropped_from_logits():
    cfg = cfg2026()
    assert cfg.padded_vocab == 320
    model = randomized(GPT(cfg, rngs=nnx.Rngs(0)))
    assert model.lm_head.kernel.shape == (192, 320) and model.wte.embedding.shape == (320, 192)
    logits = fwd(model, ids(2, 8))
    assert logits.shape == (2, 8, 300)
    h = model.hidden(ids(2, 8))
    full = h @ model.lm_head.kernel[...]
    np.testing.assert_allclose(logits, 15 * np.tanh(full[..., :300] / 15), rtol=1e-4, atol=1e-4)


def test_windows_follow_nanochat_tiling():
    assert cfg2026(depth=6).window_sizes() == [8, 8, 8, None, 8, None]
    assert cfg2026(depth=4, short_window=0, sequence_len=2048).window_sizes() == [
        512,
        512,
        512,
        None,
    ]
    assert ModelConfig(depth=4).window_sizes() == [None] * 4


@pytest.mark.parametrize("overrides", [{}, {"smear": False, "window_pattern": "SL"}])
def test_2026_decode_matches_forward(overrides):
    model = randomized(GPT(cfg2026(**overrides), rngs=nnx.Rngs(0)))
    x = ids(2, 24)
    full = fwd(model, x)
    dec = nnx.jit(lambda m, t, c, p: m.decode(t, c, p))
    cache = model.init_cache(2, 32)
    out, cache = dec(model, x[:, :10], cache, 0)
    parts = [out]
    for p in range(10, 24, 7):
        out, cache = dec(model, x[:, p : p + 7], cache, p)
        parts.append(out)
    np.testing.assert_allclose(jnp.concatenate(parts, axis=1), full, rtol=1e-4, atol=1e-4)
