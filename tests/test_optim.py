"""Optimizer split (Muon vs AdamW), lr schedule, lr_scale and the jitted train step."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from nanochat_tui.config.schema import Config, OptimConfig
from nanochat_tui.jax_engine.model import GPT
from nanochat_tui.jax_engine.optim import (
    EMBEDDING,
    MATRIX,
    UNEMBEDDING,
    _path_names,
    adamw_lr_scale,
    build_optimizer,
    clip_by_global_norm_dynamic,
    lr_schedule,
    muon_momentum,
    param_labels,
)
from nanochat_tui.jax_engine.step import make_train_step


def tiny_config(**optim) -> Config:
    return Config.model_validate(
        {
            "model": dict(depth=2, aspect_ratio=64, head_dim=32, sequence_len=32, vocab_size=300),
            "train": dict(device_batch_size=4, total_batch_size=128),
            "optim": optim,
        }
    )


def setup(config: Config):
    model = GPT(config.model, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, build_optimizer(model, config), wrt=nnx.Param)
    return model, optimizer, make_train_step(model, optimizer)


def batch(seed: int = 0, b: int = 4, t: int = 32):
    x = jax.random.randint(jax.random.key(seed), (b, t + 1), 0, 300, jnp.int32)
    return x[:, :-1], x[:, 1:]


def params_copy(model: GPT):
    return jax.tree.map(lambda a: np.array(a), nnx.state(model, nnx.Param))


def test_param_partition():
    config = tiny_config()
    model = GPT(config.model, rngs=nnx.Rngs(0))
    labels = param_labels(nnx.state(model, nnx.Param))
    flat = {
        ".".join(n for n in _path_names(path) if n != "value"): label
        for path, label in jax.tree_util.tree_leaves_with_path(labels)
    }
    assert flat.pop("wte.embedding") == EMBEDDING
    assert flat.pop("lm_head.kernel") == UNEMBEDDING
    assert len(flat) == 2 * 6  # c_q c_k c_v c_proj c_fc mlp.c_proj per block
    assert set(flat.values()) == {MATRIX}
    assert all(k.startswith("blocks.") for k in flat)


def test_adamw_lr_scaling():
    assert adamw_lr_scale(768) == pytest.approx(1.0)
    assert adamw_lr_scale(192) == pytest.approx(2.0)


def test_lr_schedule_shape():
    o = OptimConfig(warmup_ratio=0.1, warmdown_ratio=0.2, final_lr_frac=0.1)
    n = 100
    lrs = [lr_schedule(s, n, o) for s in range(n + 1)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a < b for a, b in itertools.pairwise(lrs[:10]))  # warmup rises
    assert all(x == 1.0 for x in lrs[10:81])  # constant
    assert all(a > b for a, b in itertools.pairwise(lrs[80:101]))  # warmdown falls
    assert lrs[100] == pytest.approx(0.1)  # ends at final_lr_frac
    assert lrs[90] == pytest.approx(0.5 * 1 + 0.5 * 0.1)
    plain = OptimConfig(warmup_ratio=0.0, warmdown_ratio=0.0)
    assert {lr_schedule(s, 10, plain) for s in range(11)} == {1.0}


def test_loss_decreases_on_repeated_batch():
    model, optimizer, step = setup(tiny_config())
    x, y = batch()
    losses = [float(step(model, optimizer, x, y, 1.0).loss) for _ in range(30)]
    assert losses[0] == pytest.approx(np.log(300), rel=1e-3)
    assert losses[-1] < 0.5 * losses[0]
    assert np.isfinite(losses).all()


def test_lr_scale_zero_leaves_params_unchanged():
    model, optimizer, step = setup(tiny_config())
    x, y = batch()
    before = params_copy(model)
    step(model, optimizer, x, y, 0.0)
    after = params_copy(model)
    jax.tree.map(np.testing.assert_array_equal, before, after)
    step(model, optimizer, x, y, 1.0)
    changed = jax.tree.leaves(
        jax.tree.map(lambda a, b: not np.array_equal(a, b), after, params_copy(model))
    )
    assert any(changed)


def test_grad_accumulation_matches_one_big_batch():
    config = tiny_config()
    x, y = batch(b=4)
    m1, o1, step = setup(config)
    l1 = step(m1, o1, x, y, 1.0).loss
    m2, o2, step2 = setup(config)
    l2 = step2(m2, o2, x.reshape(2, 2, -1), y.reshape(2, 2, -1), 1.0).loss
    assert float(l1) == pytest.approx(float(l2), rel=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-5),
        params_copy(m1),
        params_copy(m2),
    )


def test_muon_momentum_warms_up_like_nanochat():
    o = OptimConfig()
    assert float(muon_momentum(0, o)) == pytest.approx(0.85)
    assert float(muon_momentum(150, o)) == pytest.approx(0.90)
    assert float(muon_momentum(300, o)) == pytest.approx(0.95)
    assert float(muon_momentum(10_000, o)) == pytest.approx(0.95)
    assert muon_momentum(0, OptimConfig(muon_momentum_warmup_steps=0)) == 0.95
    # the optimizer follows it from its own step count (so a resumed run continues the ramp)
    model, optimizer, step = setup(tiny_config(muon_momentum_warmup_steps=4))
    x, y = batch()
    betas = []
    for _ in range(6):
        step(model, optimizer, x, y, 1.0)
        matrix = optimizer.opt_state[1].inner_states["matrix"].inner_state
        betas.append(float(matrix.hyperparams["beta"][...]))
    assert betas == pytest.approx([0.85, 0.875, 0.9, 0.925, 0.95, 0.95])


def test_step_is_bound_to_its_model():
    _, _, step = setup(tiny_config())
    m2, o2, _ = setup(tiny_config())
    x, y = batch()
    with pytest.raises(ValueError, match="bound to the model"):
        step(m2, o2, x, y, 1.0)


def test_dynamic_grad_clip():
    tx = clip_by_global_norm_dynamic(1.0)
    grads = {"a": jnp.full((4,), 5.0)}  # global norm 10
    state = tx.init(grads)
    norm = lambda g: float(jnp.linalg.norm(g["a"]))  # noqa: E731
    assert norm(tx.update(grads, state)[0]) == pytest.approx(1.0, rel=1e-4)  # config default
    assert norm(tx.update(grads, state, grad_clip=2.0)[0]) == pytest.approx(2.0, rel=1e-4)
    assert norm(tx.update(grads, state, grad_clip=0.0)[0]) == pytest.approx(10.0)  # disabled
    assert norm(tx.update(grads, state, grad_clip=50.0)[0]) == pytest.approx(10.0)  # under limit


def test_step_accepts_grad_clip_and_lr_multiplier():
    model, optimizer, step = setup(tiny_config(grad_clip=0.0))
    x, y = batch()
    outs = [step(model, optimizer, x, y, 0.5, 0.1) for _ in range(5)]
    losses = [float(o.loss) for o in outs]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    # grad_norm is the norm before clipping (clip 0.1 would otherwise cap it)
    assert all(float(o.grad_norm) > 0.1 for o in outs)


def test_grouped_muon_is_optax_muon_batched_by_shape():
    """The 2025 recipe's Muon (optax_muon.grouped_muon) against ``optax.contrib.muon`` itself,
    both under ``inject_hyperparams`` as build_optimizer uses them: the same state structure
    (so checkpoints are unchanged), and over 4 steps the same updates and momenta, for three
    same-shape matrices, a lone shape, a vector (optax's AdamW side) and a masked-out leaf."""
    import optax

    from nanochat_tui.jax_engine.optax_muon import grouped_muon

    def make(factory):
        inner = optax.inject_hyperparams(factory, static_args=("nesterov", "ns_steps"))(
            learning_rate=0.02, beta=lambda count: 0.85 + 0.01 * jnp.minimum(count, 5)
        )
        return optax.multi_transform(
            {"m": inner, "other": optax.sgd(0.1)},
            lambda t: {k: "other" if k == "skip" else "m" for k in t},
        )

    rng = np.random.default_rng(0)
    shapes = {"q0": (16, 24), "q1": (16, 24), "q2": (16, 24), "fc": (24, 40), "vec": (24,)}
    shapes["skip"] = (8, 8)
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}
    ref, ours = make(optax.contrib.muon), make(grouped_muon)
    ref_state, our_state = ref.init(params), ours.init(params)
    assert jax.tree.structure(ref_state) == jax.tree.structure(our_state)
    ref_update, our_update = jax.jit(ref.update), jax.jit(ours.update)
    for _ in range(4):
        grads = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}
        ref_u, ref_state = ref_update(grads, ref_state, params)
        our_u, our_state = our_update(grads, our_state, params)
        for k in shapes:
            np.testing.assert_allclose(our_u[k], ref_u[k], rtol=1e-5, atol=1e-7, err_msg=k)
        for a, b in zip(jax.tree.leaves(our_state), jax.tree.leaves(ref_state), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
        assert float(jnp.abs(ref_u["q0"] - ref_u["q1"]).max()) > 1e-4  # not trivially equal
        params = optax.apply_updates(params, ref_u)


def test_grouped_muon_in_bf16_keeps_optax_state_and_stays_close():
    """The 2025 recipe's Muon with bf16 Newton–Schulz operands (a bf16 run): the same state
    structure and momenta as optax's fp32 Muon, updates within bf16 rounding of it (and not
    equal to it: the bf16 path ran). Square, wide, tall and repeated shapes."""
    import optax

    from nanochat_tui.jax_engine.optax_muon import grouped_muon_in

    def make(factory):
        return optax.inject_hyperparams(factory, static_args=("nesterov", "ns_steps"))(
            learning_rate=0.02, beta=0.95
        )

    rng = np.random.default_rng(0)
    shapes = {"a": (32, 32), "b": (32, 32), "wide": (16, 48), "tall": (48, 16)}
    params = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}
    ref, ours = make(optax.contrib.muon), make(grouped_muon_in(jnp.bfloat16))
    ref_state, our_state = ref.init(params), ours.init(params)
    assert jax.tree.structure(ref_state) == jax.tree.structure(our_state)
    for _ in range(3):
        grads = {k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()}
        ref_u, ref_state = jax.jit(ref.update)(grads, ref_state, params)
        our_u, our_state = jax.jit(ours.update)(grads, our_state, params)
        for k in shapes:
            rel = float(jnp.linalg.norm(our_u[k] - ref_u[k]) / jnp.linalg.norm(ref_u[k]))
            assert 1e-5 < rel < 5e-2, (k, rel)  # bf16 Newton–Schulz: ~2% off fp32
        for a, b in zip(jax.tree.leaves(our_state), jax.tree.leaves(ref_state), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-6)  # momenta: fp32, identical math
    plain = make(grouped_muon_in(None))  # None keeps optax's own iteration: its updates exactly
    plain_u, _ = jax.jit(plain.update)(grads, plain.init(params), params)
    ref_u, _ = jax.jit(ref.update)(grads, ref.init(params), params)
    for k in shapes:
        np.testing.assert_allclose(plain_u[k], ref_u[k], rtol=1e-5, atol=1e-7, err_msg=k)


def test_own_newton_schulz_replicates_optax_in_fp32():
    """The bf16 path's iteration is optax's ``scale_by_muon`` re-stated: run in fp32 it gives
    optax's updates and momenta (so the only difference in a bf16 run is the operands)."""
    import optax

    from nanochat_tui.jax_engine.optax_muon import _STACKED, _scale_stacks_by_muon_in

    rng = np.random.default_rng(0)
    grads = [jnp.asarray(rng.normal(size=s), jnp.float32) for s in [(3, 8, 8), (2, 8, 24)]]
    ref = optax.contrib.scale_by_muon(weight_dimension_numbers=lambda t: [_STACKED] * len(t))
    ours = _scale_stacks_by_muon_in(jnp.float32, 5, 0.95, 1e-8, None, nesterov=True)
    state = ref.init(grads)
    for _ in range(2):
        ref_u, ref_state = ref.update(grads, state)
        our_u, state = ours.update(grads, state)
        ours_all, ref_all = our_u + jax.tree.leaves(state), ref_u + jax.tree.leaves(ref_state)
        for a, b in zip(ours_all, ref_all, strict=True):
            np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-5)  # fp32 rounding only


@pytest.mark.parametrize("recipe", ["nanochat-2025", "nanochat-2026"])
def test_newton_schulz_runs_in_the_compute_dtype(recipe):
    """build_optimizer gives Muon's matmuls bf16 operands when the run computes in bf16
    (train.dtype, 'auto' on a GPU/TPU), and keeps them fp32 otherwise."""

    def dot_dtypes(dtype: str) -> set[str]:
        config = Config.model_validate(
            {
                "model": dict(
                    recipe=recipe,
                    depth=1,
                    aspect_ratio=32,
                    head_dim=16,
                    sequence_len=16,
                    vocab_size=300,
                ),
                "train": dict(device_batch_size=2, total_batch_size=32, dtype=dtype),
            }
        )
        model = GPT(config.model, rngs=nnx.Rngs(0))
        params = nnx.state(model, nnx.Param)
        tx = build_optimizer(model, config)
        jaxpr = jax.make_jaxpr(lambda g, s, p: tx.update(g, s, p, lr_scale=1.0))(
            params, tx.init(params), params
        )
        return _nested_dot_dtypes(jaxpr.jaxpr)

    assert "bfloat16" in dot_dtypes("bfloat16")
    assert "bfloat16" not in dot_dtypes("float32")


def _nested_dot_dtypes(jaxpr) -> set[str]:
    """Operand dtypes of every dot_general in ``jaxpr`` and the jaxprs nested in it (vmap,
    pjit, scan bodies)."""
    out: set[str] = set()
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            out |= {str(v.aval.dtype) for v in eqn.invars}
        for param in eqn.params.values():
            for sub in param if isinstance(param, (list, tuple)) else [param]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    out |= _nested_dot_dtypes(inner)
    return out


def test_grouped_muon_refuses_what_it_does_not_batch():
    from optax.contrib import MuonDimensionNumbers

    from nanochat_tui.jax_engine.optax_muon import grouped_muon

    with pytest.raises(ValueError, match="default 2-D rule"):
        grouped_muon(0.02, muon_weight_dimension_numbers=MuonDimensionNumbers())
