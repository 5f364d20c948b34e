"""``model.blocks`` (per-block heads, kv heads, window, MLP, value embedding): schema validation,
the engine builds it, decode agrees with the forward, and the closed-form estimates agree with
JAX's own compiled cost analysis (FLOPs within 5%), memory analysis (within 25%) and the exact
parameter count; resume and export refuse what does not fit."""

from __future__ import annotations

from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nanochat_tui.config import compat
from nanochat_tui.config.estimates import flops_per_token, memory_estimate, num_params
from nanochat_tui.config.loader import ConfigError, apply_overrides
from nanochat_tui.config.schema import Config, ModelConfig
from nanochat_tui.export.hf import refusal
from nanochat_tui.jax_engine.model import GPT, loss_fn

BASE = dict(depth=3, width=128, head_dim=32, sequence_len=64, vocab_size=512)
DESIGNS = {
    "uniform-width": BASE,
    "heterogeneous": {
        **BASE,
        "blocks": [
            {"n_head": 4, "n_kv_head": 2, "mlp": "swiglu"},
            {"n_head": 2, "value_embed": True, "window": 32},
            {"n_head": 8, "n_kv_head": 1, "mlp_hidden": 256},
        ],
    },
    "2026-swiglu": {
        **BASE,
        "recipe": "nanochat-2026",
        "blocks": [{"mlp": "swiglu"}, {"n_head": 2}, {}],
    },
}


def config(model: dict, batch: int = 2) -> Config:
    seq = model["sequence_len"]
    return Config.model_validate(
        {"model": model, "train": {"device_batch_size": batch, "total_batch_size": batch * seq}}
    )


@pytest.mark.parametrize("name", list(DESIGNS))
def test_estimates_agree_with_compiled_cost_and_memory(name):
    cfg = config(DESIGNS[name])
    gpt = GPT(cfg.model, rngs=nnx.Rngs(0))
    graphdef, params, rest = nnx.split(gpt, nnx.Param, ...)
    assert sum(a.size for a in jax.tree.leaves(params)) == num_params(cfg.model)
    b, t = cfg.train.device_batch_size, cfg.model.sequence_len
    x = jnp.zeros((b, t), jnp.int32)

    def grads(p, x):
        return jax.grad(lambda q: loss_fn(nnx.merge(graphdef, q, rest), x, x))(p)

    compiled = jax.jit(grads).lower(params, x).compile()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    # XLA's dense attention at this length computes every score, windowed or not: compare the
    # estimate with windows counted as full (the engine's estimate credits the window)
    full = cfg.model.model_copy(
        update={
            "blocks": [s.model_copy(update={"window": None}) for s in cfg.model.blocks]
            if cfg.model.blocks
            else None
        }
    )
    assert cost["flops"] / (b * t) == pytest.approx(flops_per_token(full), rel=0.05)
    m = compiled.memory_analysis()
    real = m.argument_size_in_bytes + m.output_size_in_bytes + m.temp_size_in_bytes
    e = memory_estimate(cfg, "cpu")
    assert (e.params + e.grads + e.activations + e.logits) / real == pytest.approx(1, abs=0.25)


def test_blocks_build_their_own_shapes_and_decode_matches_forward():
    cfg = config(DESIGNS["heterogeneous"]).model
    gpt = GPT(cfg, rngs=nnx.Rngs(1))
    b0, b1, b2 = gpt.blocks
    assert b0.attn.c_q.kernel.shape == (128, 128) and b0.attn.c_k.kernel.shape == (128, 64)
    assert b0.mlp.c_gate.kernel.shape == (128, 384)  # 8/3·128 rounded up to 64
    assert b1.attn.head_dim == 64 and b1.attn.window == 32 and b1.value_embed is not None
    assert b2.attn.c_k.kernel.shape == (128, 16) and b2.mlp.c_fc.kernel.shape == (128, 256)
    # zero-initialised output projections make every block the identity: perturb them
    state = nnx.state(gpt, nnx.Param)
    leaves, tree = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(0), len(leaves))
    state = jax.tree.unflatten(
        tree, [a + 0.02 * jax.random.normal(k, a.shape) for a, k in zip(leaves, keys, strict=True)]
    )
    nnx.update(gpt, state)
    idx = jax.random.randint(jax.random.key(2), (1, 12), 0, 512)
    want = gpt(idx)
    cache = gpt.init_cache(1, 16)
    assert isinstance(cache.k, tuple)
    logits, cache = gpt.decode(idx[:, :8], cache, 0)
    got = [logits]
    for i in range(8, 12):
        step, cache = gpt.decode(idx[:, i : i + 1], cache, i)
        got.append(step)
    np.testing.assert_allclose(np.concatenate(got, axis=1), want, atol=2e-4)


@pytest.mark.parametrize(
    ("blocks", "message"),
    [
        ([{}, {}], "blocks lists 2 blocks but depth is 3"),
        ([{}, {"n_head": 3}, {}], "blocks[1].n_head 3 must divide width 128"),
        ([{}, {}, {"n_head": 4, "n_kv_head": 3}], "blocks[2].n_kv_head 3 does not divide n_head 4"),
    ],
)
def test_schema_names_the_block_and_field(blocks, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        ModelConfig.model_validate({**BASE, "blocks": blocks})


def test_default_is_unchanged_identical_blocks():
    m = ModelConfig.model_validate({"depth": 4, "aspect_ratio": 64, "head_dim": 64})
    settings = m.block_settings()
    assert {(s.n_head, s.n_kv_head, s.head_dim, s.mlp, s.mlp_hidden) for s in settings} == {
        (4, 4, 64, "relu2", 1024)
    }
    assert [s.window for s in settings] == m.window_sizes()


def test_resume_refuses_another_design_and_export_refuses_blocks():
    cfg = config(DESIGNS["heterogeneous"])
    meta = {"model": cfg.model.model_dump(mode="json"), "depth": 3, "model_dim": 128}
    assert compat.check(cfg, meta, suggest_prefab=False) == []
    other = config(DESIGNS["2026-swiglu"])
    fields = {i.field for i in compat.check(other, meta, suggest_prefab=False)}
    assert "blocks" in fields
    narrower = apply_overrides(cfg, {"model.width": 64, "model.blocks": None})
    assert "width" in {i.field for i in compat.check(narrower, meta, suggest_prefab=False)}
    why = refusal(SimpleNamespace(config=cfg, model=cfg.model.resolved()))
    assert why and "model.blocks" in why and "SwiGLU" in why


def test_blocks_via_set_override_one_readable_error():
    cfg = config(BASE)
    with pytest.raises(ConfigError, match=r"n_kv_head 3 does not divide n_head 4"):
        apply_overrides(cfg, {"model.blocks": [{}, {}, {"n_head": 4, "n_kv_head": 3}]})


def test_config_pane_reads_blocks_as_plain_data():
    from nanochat_tui.config.loader import get_value

    cfg = config(DESIGNS["2026-swiglu"])
    assert get_value(cfg, "model.blocks") == [{"mlp": "swiglu"}, {"n_head": 2}, {}]
    assert get_value(cfg, "model.width") == 128
