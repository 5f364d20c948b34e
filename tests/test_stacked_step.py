"""The stacked train step (jax_engine/stacked.py): under ``model.scan_layers`` the step keeps the
blocks' parameters and optimizer state stacked over layers, and equals the per-layer step."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from helpers import Recorder
from nanochat_tui.config import load_config
from nanochat_tui.config.schema import Config
from nanochat_tui.jax_engine import stacked
from nanochat_tui.jax_engine.control import ControlInbox
from nanochat_tui.jax_engine.model import GPT
from nanochat_tui.jax_engine.optim import build_optimizer
from nanochat_tui.jax_engine.step import make_train_step
from nanochat_tui.jax_engine.train import train

SEQ, BATCH, VOCAB = 32, 2, 512


def _config(recipe: str, depth: int = 4, **model_kw) -> Config:
    model = dict(
        depth=depth, width=64, head_dim=32, sequence_len=SEQ, vocab_size=VOCAB,
        short_window=8, recipe=recipe, scan_layers=True, **model_kw,
    )  # fmt: skip
    train_cfg = {"device_batch_size": BATCH, "total_batch_size": 2 * BATCH * SEQ}
    return Config.model_validate({"model": model, "train": train_cfg})


def _build(config: Config):
    """The model and its optimizer; the zero-init output projections get small random values,
    so no weight's gradient is exactly zero at init (the residual/backout scalars' would be:
    then both sides compute rounding noise, which Adam turns into ±lr steps either way)."""
    model = GPT(config.model, rngs=nnx.Rngs(0))
    for i, block in enumerate(model.blocks):
        for layer in (block.attn.c_proj, block.mlp.c_proj):
            layer.kernel[...] = 0.05 * jax.random.normal(jax.random.key(i), layer.kernel.shape)
    return model, nnx.Optimizer(model, build_optimizer(model, config), wrt=nnx.Param)


def _batches(n: int):
    rng = np.random.default_rng(0)
    shape = (2, BATCH, SEQ)  # two micro-batches: token-weighted accumulation runs too
    return [
        (jnp.asarray(rng.integers(0, VOCAB, shape), jnp.int32),
         jnp.asarray(rng.integers(-1, VOCAB, shape), jnp.int32))  # −1: masked targets
        for _ in range(n)
    ]  # fmt: skip


def _per_layer_step(model, optimizer):
    return make_train_step(model, optimizer, stack=False)


@pytest.mark.parametrize(
    ("recipe", "runs"),
    [
        ("nanochat-2025", [(0, 4, 1)]),  # one run of identical blocks
        ("nanochat-2026", [(0, 4, 2)]),  # value embeddings every other block: period 2
        # depth 3, S S L with value embeddings on blocks 1 and 2: no repeats, three runs of one
        # (depth 2 would snapshot backout at the last block, whose gradient is then exactly 0)
        ("nanochat-2026-sssl", [(0, 1, 1), (1, 2, 1), (2, 3, 1)]),
    ],
)
def test_stacked_step_equals_the_per_layer_step(recipe, runs):
    """Three steps each way from the same init (a sync between steps 2 and 3): the same losses
    and gradient norms, and after syncing the same weights, optimizer state and step count.
    Weights compare against how far they moved (1 %). Between syncs
    the model's block weights are freed, so a stale read fails loudly; a state put into the
    model from outside after a sync is what the next step trains from."""
    if recipe.endswith("-sssl"):
        config = _config("nanochat-2026", depth=3)
    else:
        config = _config(recipe, window_pattern="L")
    model, optimizer = _build(config)
    assert stacked.StackedLayout(model).runs == runs
    ref_model, ref_optimizer = _build(config)
    init = [np.asarray(a) for a in jax.tree.leaves(nnx.state(ref_model, nnx.Param))]
    step = make_train_step(model, optimizer)
    ref_step = _per_layer_step(ref_model, ref_optimizer)
    assert isinstance(step, stacked.StackedTrainStep)
    assert not isinstance(ref_step, stacked.StackedTrainStep)
    for i, (x, y) in enumerate(_batches(3)):
        out = step(model, optimizer, x, y, 1.0, 1.0)
        ref = ref_step(ref_model, ref_optimizer, x, y, 1.0, 1.0)
        np.testing.assert_allclose(float(out.loss), float(ref.loss), rtol=1e-6)
        np.testing.assert_allclose(float(out.grad_norm), float(ref.grad_norm), rtol=1e-5)
        assert float(out.tokens) == float(ref.tokens)
        if i == 0:
            with pytest.raises(RuntimeError, match="deleted"):
                np.asarray(model.blocks[0].attn.c_q.kernel[...])
        if i == 1:
            step.sync()
    step.sync()
    ours = jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]
    theirs = jax.tree.leaves(nnx.state(ref_model, nnx.Param))
    for (path, a), b, b0 in zip(ours, theirs, init, strict=True):
        moved = float(np.max(np.abs(np.asarray(b) - b0)))
        err = float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
        assert err <= 0.01 * moved + 1e-6, (jax.tree_util.keystr(path), err, moved)
    opt = jax.tree.leaves(nnx.state(optimizer))
    ref_opt = jax.tree.leaves(nnx.state(ref_optimizer))
    for a, b in zip(opt, ref_opt, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-6)
    assert int(optimizer.step[...]) == int(ref_optimizer.step[...]) == 3
    # the reference's exact state put into the model: both take the same fourth step
    nnx.update(model, jax.tree.map(jnp.copy, nnx.state(ref_model)))
    nnx.update(optimizer, jax.tree.map(jnp.copy, nnx.state(ref_optimizer)))
    x, y = _batches(4)[3]
    out = step(model, optimizer, x, y, 1.0, 1.0)
    ref = ref_step(ref_model, ref_optimizer, x, y, 1.0, 1.0)
    np.testing.assert_allclose(float(out.loss), float(ref.loss), rtol=1e-6)
    np.testing.assert_allclose(float(out.grad_norm), float(ref.grad_norm), rtol=1e-6)


def test_layout_round_trip_is_exact():
    """Per-layer → stacked → per-layer gives every leaf back unchanged, for the parameters and
    for the optimizer state (built over the stacked tree by the same transform)."""
    config = _config("nanochat-2026", depth=8)
    model, optimizer = _build(config)
    layout = stacked.StackedLayout(model)
    assert layout.runs == [(0, 8, 4)]
    params = nnx.state(model, nnx.Param)
    tree = layout.stack_params(params)
    assert tree[stacked.STACK_KEY]["r0"]["q1"]["attn"]["c_q"]["kernel"].shape[0] == 2
    back = layout.unstack_like(tree, params)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(back), strict=True):
        np.testing.assert_array_equal(a, b)
    opt = nnx.as_pure(optimizer.opt_state)
    abstract = jax.eval_shape(optimizer.tx.init, tree)
    opt_stacked = layout.stack_like(opt, abstract)
    back = layout.unstack_like(opt_stacked, opt)
    for a, b in zip(jax.tree.leaves(opt), jax.tree.leaves(back), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="stacked"):
        layout.stack_like(opt, jax.eval_shape(optimizer.tx.init, params))


RUN = [
    "model.depth=2",
    "model.scan_layers=true",
    "model.sequence_len=64",
    "model.vocab_size=512",
    "data.max_chars=300000",
    "data.tokenizer_chars=100000",
    "train.device_batch_size=4",
    "train.total_batch_size=512",
    "train.num_iterations=6",
    "train.eval_every=3",
    "train.sample_every=0",
    "train.save_every=2",  # saves mid-run: the step goes on after syncing for them
    "train.eval_tokens=2048",
]


def test_scanned_run_resumes_bit_for_bit(tmp_path, monkeypatch):
    """A scanned run trains on the stacked step (evals and saves sync it back), and stopping
    and resuming reproduces the straight run's losses and final val bpb exactly."""
    monkeypatch.setenv("NANOCHAT_TUI_HOME", str(tmp_path / "home"))
    config = load_config("tiny", RUN)
    ref = Recorder()
    straight = train(config, tmp_path / "straight", ref)
    assert straight.status == "finished" and straight.step == 6
    control = ControlInbox()
    first = Recorder(stop_at=2, control=control)
    r1 = train(config, tmp_path / "resumed", first, control)
    assert r1.status == "stopped" and r1.step == 3
    second = Recorder()
    r2 = train(config, tmp_path / "resumed", second, resume=True)
    assert r2.status == "finished" and r2.step == 6
    assert {**first.losses(), **second.losses()} == ref.losses()  # bit for bit
    assert r2.final_val_bpb == straight.final_val_bpb


def test_the_trunk_reads_the_given_stacks_for_its_own_model_only():
    """Under ``use_stacked_blocks(model, stacks)`` that model's scanned trunk runs on ``stacks``
    (here another model's weights), while any other model (a DPO reference, say) keeps its own."""
    from nanochat_tui.jax_engine.model import use_stacked_blocks

    config = _config("nanochat-2026", depth=8)
    model, _ = _build(config)
    other = GPT(config.model, rngs=nnx.Rngs(7))
    stacks = stacked.StackedLayout(other).stack_params(nnx.state(other, nnx.Param))
    x = jnp.asarray(np.random.default_rng(0).integers(0, VOCAB, (BATCH, SEQ)), jnp.int32)
    own, theirs = model.hidden(x), other.hidden(x)
    with use_stacked_blocks(other, stacks[stacked.STACK_KEY]):
        np.testing.assert_allclose(other.hidden(x), theirs, atol=1e-6)
        np.testing.assert_allclose(model.hidden(x), own, atol=1e-6)  # not its stacks
    # the model's blocks from `other`, everything else its own: differs from both
    with use_stacked_blocks(model, stacks[stacked.STACK_KEY]):
        mixed = model.hidden(x)
    assert float(jnp.max(jnp.abs(mixed - own))) > 1e-3
    assert float(jnp.max(jnp.abs(mixed - theirs))) > 1e-3
