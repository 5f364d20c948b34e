"""nanochat's current Muon (muon.py) against a NumPy reference written from nanochat/optim.py, plus
the 2026 schedule (warmup steps, warmdown 0.65 to 0.05, momentum ramps, cosine weight decay), the
per-group AdamW table and batch-size lr scaling."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from nanochat_tui.config.schema import Config
from nanochat_tui.jax_engine.model import GPT
from nanochat_tui.jax_engine.muon import POLAR_EXPRESS, nanochat_muon
from nanochat_tui.jax_engine.optim import (
    ADAMW_GROUPS,
    EMBEDDING,
    MATRIX,
    RESID,
    SMEAR,
    UNEMBEDDING,
    VALUE_EMBEDS,
    X0,
    batch_lr_scale,
    build_optimizer,
    lr_schedule,
    muon_momentum,
    muon_weight_decay,
    param_labels,
)
from nanochat_tui.jax_engine.step import make_train_step

NS = [(3.4445, -4.7750, 2.0315)] * 5


def numpy_muon_step(w, g, buf, v, lr, mom, wd, beta2, *, polar, normuon, renorm, cautious):
    """One nanochat Muon step on a torch-layout ``[out, in]`` weight, float64 NumPy."""
    buf = buf + (1 - mom) * (g - buf)
    g = g + mom * (buf - g)
    x = g.copy()
    if renorm:
        target = np.linalg.norm(x) / np.sqrt(x.shape[0])
        x = x * (target / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-6))
    x = x / (np.linalg.norm(x) * 1.01 + 1e-6) if polar else x / (np.linalg.norm(x) + 1e-7)
    for a, b, c in POLAR_EXPRESS if polar else NS:
        if x.shape[0] > x.shape[1]:
            A = x.T @ x
            x = a * x + x @ (b * A + c * A @ A)
        else:
            A = x @ x.T
            x = a * x + (b * A + c * A @ A) @ x
    if renorm:
        x = x * np.sqrt(min(x.shape)) / max(np.linalg.norm(x), 1e-6)
    if normuon:
        red = 1 if x.shape[0] >= x.shape[1] else 0
        v_mean = (x**2).mean(axis=red, keepdims=True)
        n = x.shape[red]
        v_norm = np.sqrt(v_mean.sum() * n)
        v = v + (1 - beta2) * (v_mean - v)
        step = 1 / np.sqrt(np.maximum(v, 1e-10))
        v_norm_new = np.sqrt((v_mean * n * step**2).sum())
        x = x * step * (v_norm / max(v_norm_new, 1e-10))
    lr = lr * max(1.0, x.shape[0] / x.shape[1]) ** 0.5
    mask = (x * w >= 0) if cautious else 1.0
    return w - (lr * x + lr * wd * w * mask), buf, v


@pytest.mark.parametrize("shape", [(48, 16), (16, 48), (24, 24)])  # our [in, out] kernels
@pytest.mark.parametrize(
    "flags",
    [
        dict(polar=True, normuon=True, renorm=True, cautious=True),
        dict(polar=False, normuon=False, renorm=False, cautious=False),
        dict(polar=True, normuon=False, renorm=False, cautious=True),
    ],
)
def test_muon_matches_numpy_reference(shape, flags):
    rng = np.random.default_rng(0)
    w = rng.normal(size=shape).astype(np.float32) * 0.1
    lr, wd = 0.02, 0.3
    moms = [0.85, 0.9, 0.95, 0.97]
    tx = nanochat_muon(
        lr,
        momentum=lambda c: jnp.asarray(moms)[c],
        weight_decay=lambda c: wd * (1.0 - 0.1 * c),
        polar_express=flags["polar"],
        normuon=flags["normuon"],
        renorm=flags["renorm"],
        cautious=flags["cautious"],
    )
    params = {"w": jnp.asarray(w)}
    state = tx.init(params)
    ref_w = w.T.astype(np.float64)  # torch layout
    buf = np.zeros_like(ref_w)
    out_, in_ = ref_w.shape
    v = np.zeros((out_, 1) if out_ >= in_ else (1, in_))
    for step in range(4):
        g = rng.normal(size=shape).astype(np.float32)
        updates, state = tx.update({"w": jnp.asarray(g)}, state, params)
        params = optax.apply_updates(params, updates)
        ref_w, buf, v = numpy_muon_step(
            ref_w,
            g.T.astype(np.float64),
            buf,
            v,
            lr,
            moms[step],
            wd * (1 - 0.1 * step),
            0.9,
            **flags,
        )
        np.testing.assert_allclose(np.asarray(params["w"]).T, ref_w, rtol=2e-4, atol=2e-6)


@pytest.mark.parametrize("shape", [(48, 16), (16, 48)])
def test_bf16_newton_schulz_stays_near_the_float64_reference(shape):
    """With ``ns_dtype=bf16`` (what a bf16 run on a GPU uses) the iterations' matmuls take bf16
    operands: four steps still land near the float64 NumPy reference, and not on the fp32
    result (so the bf16 path really ran)."""
    rng = np.random.default_rng(1)
    w = rng.normal(size=shape).astype(np.float32) * 0.1
    flags = dict(polar=True, normuon=True, renorm=True, cautious=True)
    make = lambda dtype: nanochat_muon(  # noqa: E731
        0.02, lambda c: 0.9, lambda c: 0.3, ns_dtype=dtype, polar_express=True
    )
    fp32, bf16 = make(jnp.float32), make(jnp.bfloat16)
    p32 = p16 = {"w": jnp.asarray(w)}
    s32, s16 = fp32.init(p32), bf16.init(p16)
    ref_w, buf = w.T.astype(np.float64), np.zeros(w.T.shape)
    v = np.zeros((shape[1], 1) if shape[1] >= shape[0] else (1, shape[0]))
    for _ in range(4):
        g = rng.normal(size=shape).astype(np.float32)
        u32, s32 = fp32.update({"w": jnp.asarray(g)}, s32, p32)
        u16, s16 = bf16.update({"w": jnp.asarray(g)}, s16, p16)
        p32, p16 = optax.apply_updates(p32, u32), optax.apply_updates(p16, u16)
        ref_w, buf, v = numpy_muon_step(
            ref_w, g.T.astype(np.float64), buf, v, 0.02, 0.9, 0.3, 0.9, **flags
        )
    moved = np.asarray(p16["w"]).T - w.T
    ref_moved = ref_w - w.T
    rel = np.linalg.norm(moved - ref_moved) / np.linalg.norm(ref_moved)
    assert rel < 5e-2, rel  # bf16 operands: a few percent (fp32 lands at 2e-4)
    assert float(jnp.abs(p16["w"] - p32["w"]).max()) > 1e-6  # bf16 operands did change it


def config2026(**optim) -> Config:
    return Config.model_validate(
        {
            "model": dict(
                recipe="nanochat-2026",
                depth=2,
                aspect_ratio=64,
                head_dim=32,
                sequence_len=32,
                vocab_size=300,
                short_window=8,
            ),
            "train": dict(device_batch_size=4, total_batch_size=128, num_iterations=100),
            "optim": optim,
        }
    )


def test_2026_schedule():
    o = config2026().optim
    n = 1000
    lrs = [lr_schedule(s, n, o) for s in range(n + 1)]
    assert lrs[0] == pytest.approx(1 / 40) and lrs[39] == 1.0  # 40 warmup steps
    assert lrs[350] == 1.0 and lrs[351] < 1.0  # warmdown over the last 65%
    assert lrs[n] == pytest.approx(0.05)  # to 5% of peak
    assert lrs[675] == pytest.approx(0.5 + 0.5 * 0.05)
    # momentum: 0.85 -> 0.97 over 400 steps, flat, then to 0.90 over the warmdown
    m = 2000  # warmdown starts at step 700
    assert float(muon_momentum(0, o, m)) == pytest.approx(0.85)
    assert float(muon_momentum(200, o, m)) == pytest.approx(0.91)
    assert float(muon_momentum(400, o, m)) == pytest.approx(0.97)
    assert float(muon_momentum(700, o, m)) == pytest.approx(0.97)
    assert float(muon_momentum(1350, o, m)) == pytest.approx(0.935)
    assert float(muon_momentum(m, o, m)) == pytest.approx(0.90)
    # Muon weight decay: half cosine from 0.28 to 0
    assert float(muon_weight_decay(0, o, n)) == pytest.approx(0.28)
    assert float(muon_weight_decay(500, o, n)) == pytest.approx(0.14)
    assert float(muon_weight_decay(n, o, n)) == pytest.approx(0.0, abs=1e-7)


def test_batch_lr_scale():
    assert batch_lr_scale(config2026()) == pytest.approx((128 / 2**19) ** 0.5)
    assert batch_lr_scale(config2026(batch_lr_scale=False)) == 1.0
    assert batch_lr_scale(Config()) == 1.0


def test_2026_param_groups_and_per_group_adamw():
    config = config2026()
    model = GPT(config.model, rngs=nnx.Rngs(0))
    labels = jax.tree.leaves(param_labels(nnx.state(model, nnx.Param)))
    assert set(labels) == {EMBEDDING, UNEMBEDDING, VALUE_EMBEDS, RESID, X0, SMEAR, MATRIX}
    assert ADAMW_GROUPS[X0] == (0.96, 0.95, 0.0) and ADAMW_GROUPS[UNEMBEDDING] == (0.8, 0.96, 0.01)


def test_2026_training_step_learns_and_switches_change_the_update():
    x = jax.random.randint(jax.random.key(0), (4, 33), 0, 300, jnp.int32)
    x, y = x[:, :-1], x[:, 1:]

    def run(config, steps):
        model = GPT(config.model, rngs=nnx.Rngs(0))
        optimizer = nnx.Optimizer(model, build_optimizer(model, config), wrt=nnx.Param)
        step = make_train_step(model, optimizer)
        losses = [float(step(model, optimizer, x, y, 1.0, None).loss) for _ in range(steps)]
        return losses, nnx.state(model, nnx.Param)

    losses, _ = run(config2026(batch_lr_scale=False), 25)
    assert np.isfinite(losses).all() and losses[-1] < 0.6 * losses[0]
    _, ref = run(config2026(batch_lr_scale=False), 1)
    for switch in ("muon_polar_express", "muon_normuon", "adamw_per_group"):
        _, ablated = run(config2026(batch_lr_scale=False, **{switch: False}), 1)
        diffs = jax.tree.leaves(
            jax.tree.map(lambda a, b: float(jnp.abs(a - b).max()), ref, ablated)
        )
        assert max(diffs) > 0, switch


def test_same_shape_matrices_are_updated_as_one_batch_exactly_as_one_by_one():
    """Matrices of one shape go through one batched chain (the optimizer's program stays the
    same size however deep the model); each must get the update it would get alone."""
    from nanochat_tui.jax_engine.muon import matrix_groups

    rng = np.random.default_rng(1)
    shapes = {"a": (32, 16), "b": (16, 32), "c": (32, 16), "d": (32, 16), "e": (4, 32, 16)}
    params = {
        k: jnp.asarray(rng.normal(size=s).astype(np.float32) * 0.1) for k, s in shapes.items()
    }
    leaves = jax.tree.leaves(params)
    assert matrix_groups(leaves, leaves) == [[0, 2, 3, 4], [1]]  # a 3-D stack joins its shape

    def make():
        return nanochat_muon(0.02, momentum=lambda c: 0.9, weight_decay=lambda c: 0.2)

    together = make()
    state = together.init(params)
    alone = {k: (make(), make().init({k: p})) for k, p in params.items()}
    for _ in range(3):
        grads = {k: jnp.asarray(rng.normal(size=s).astype(np.float32)) for k, s in shapes.items()}
        updates, state = together.update(grads, state, params)
        for k, (tx, st) in alone.items():
            upd, st = tx.update({k: grads[k]}, st, {k: params[k]})
            alone[k] = (tx, st)
            np.testing.assert_allclose(updates[k], upd[k], rtol=1e-5, atol=1e-7)
        params = optax.apply_updates(params, updates)


def test_muon_weight_decay_scales_as_nanochats_base_train():
    """λ = 0.28·√(B/2^19)·D_ref/D (base_train.py's T_epoch rule): the scaling-parameter counts are
    what nanochat@92d63d4's ``GPT.num_scaling_params`` gives for the same shapes (matrices + lm
    head): 917,528 for `tiny` and 88,081,248 for its depth-12 reference."""
    from nanochat_tui.config import load_config
    from nanochat_tui.jax_engine.optim import muon_wd_scale, scaling_params

    tiny = load_config("tiny", ["model.recipe=nanochat-2026"])
    d12 = load_config("tiny", ["model.recipe=nanochat-2026", "model.depth=12"])
    assert (scaling_params(tiny.model), scaling_params(d12.model)) == (917_528, 88_081_248)
    assert muon_wd_scale(tiny) == pytest.approx((8192 / 2**19) ** 0.5 * 88_081_248 / 917_528)
    at_ref = ["model.depth=12", "train.total_batch_size=524288"]
    assert muon_wd_scale(load_config("tiny", ["model.recipe=nanochat-2026", *at_ref])) == 1.0
    off = ["model.recipe=nanochat-2026", "optim.muon_wd_scaling=false"]
    assert muon_wd_scale(load_config("tiny", off)) == 1.0
    assert muon_wd_scale(load_config("tiny")) == 1.0  # nanochat-2025 has no Muon decay


def test_the_optimizer_decays_block_matrices_by_the_scaled_weight_decay():
    """With zero gradients a Muon step is the decay alone: W·(1 − lr'·λ), λ scaled (cautious mask
    all true at g = 0); an AdamW group without decay stays put."""
    config = config2026()
    from nanochat_tui.jax_engine.optim import muon_wd_scale

    scale = muon_wd_scale(config)
    assert scale > 1.5  # this small model at 128-token steps: a strong decay
    model = GPT(config.model, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, build_optimizer(model, config), wrt=nnx.Param)
    before = {p: np.array(v[...]) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    zeros = jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param))
    optimizer.update(model, zeros, lr_scale=jnp.float32(1.0))
    after = {p: np.asarray(v[...]) for p, v in nnx.to_flat_state(nnx.state(model, nnx.Param))}
    o = config.optim.resolved()
    lr = o.matrix_lr * batch_lr_scale(config)
    w = before[("blocks", 0, "attn", "c_q", "kernel")]  # [in, out] = [128, 128]
    want = w * (1 - lr * 0.28 * scale)
    np.testing.assert_allclose(after[("blocks", 0, "attn", "c_q", "kernel")], want, rtol=1e-6)
    np.testing.assert_array_equal(after[("x0_lambdas",)], before[("x0_lambdas",)])  # AdamW, wd 0
