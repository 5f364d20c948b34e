"""SFT stage: masked tokens contribute nothing to the loss or its gradient, packing, exact resume,
and a tiny SFT from a tiny pretrained checkpoint lowers the held-out assistant-token loss."""

from __future__ import annotations

import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from helpers import Recorder
from nanochat_tui import rundir
from nanochat_tui.align.chat import render_conversation
from nanochat_tui.align.packing import best_fit, collate
from nanochat_tui.config import load_config
from nanochat_tui.errors import UserError
from nanochat_tui.jax_engine.control import ControlInbox
from nanochat_tui.jax_engine.tokenizer import Tokenizer
from nanochat_tui.jax_engine.train import train

BASE = [
    "model.depth=1",
    "model.head_dim=32",
    "model.sequence_len=128",
    "model.vocab_size=512",
    "data.max_chars=300000",
    "data.tokenizer_chars=100000",
    "train.device_batch_size=4",
    "train.total_batch_size=512",
    "train.eval_every=0",
    "train.sample_every=0",
    "train.save_every=0",
]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny pretrained run (its checkpoint and tokenizer start every SFT here)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("NANOCHAT_TUI_HOME", str(tmp_path_factory.mktemp("home")))
    run_dir = tmp_path_factory.mktemp("runs") / "base"
    result = train(load_config("tiny", [*BASE, "train.num_iterations=40"]), run_dir, Recorder())
    mp.undo()
    assert result.status == "finished"
    return run_dir


def _sft_config(base: Path, *extra: str):
    return load_config(
        "tiny", [*BASE, "train.stage=sft", f"run.init_from={base}", "optim.warmdown_ratio=0.5",
                 *extra],
    )  # fmt: skip


def _task(base: Path, *extra: str):
    from nanochat_tui.jax_engine.tasks.sft import SFTTask

    task = SFTTask(_sft_config(base, *extra), Tokenizer.load(base / "tokenizer.json"), print)
    task.prepare()
    return task


# ---------------------------------------------------------------- the loss sees assistant tokens only


def test_masked_tokens_contribute_nothing_to_loss_or_gradient(base) -> None:
    from nanochat_tui.jax_engine.model import GPT
    from nanochat_tui.jax_engine.tasks.sft import SFTTask

    tok = Tokenizer.load(base / "tokenizer.json")
    conv = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is 2 + 3?"},
            {"role": "assistant", "content": [{"type": "python", "text": "2 + 3"}]},
            {"role": "tool", "content": "5"},
            {"role": "assistant", "content": "It is 5."},
            {"role": "user", "content": "Thanks!"},
            {"role": "assistant", "content": "You are welcome."},
        ]
    }
    ids, mask = render_conversation(tok, conv)
    short = {
        "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
    }
    ids2, mask2 = render_conversation(tok, short)
    row_len = 65
    x, y = collate([ids, ids2], [mask, mask2], [[0], [1]], row_len, tok.bos_id)
    config = _sft_config(base, "model.sequence_len=64")
    model = GPT(config.model, rngs=nnx.Rngs(0))
    head = model.lm_head.kernel
    head[...] = 0.5 * jax.random.normal(jax.random.key(1), head[...].shape)

    # independent reference: every next-token CE, weighted by the rendered mask (not by y)
    tokens = np.full((2, row_len), tok.bos_id)
    weights = np.zeros((2, row_len))
    tokens[0, : len(ids)], weights[0, : len(ids)] = ids, mask
    tokens[1, : len(ids2)], weights[1, : len(ids2)] = ids2, mask2
    w = jnp.asarray(weights[:, 1:])

    def reference(m, targets):
        logp = jax.nn.log_softmax(m(jnp.asarray(x)).astype(jnp.float32), axis=-1)
        ce = -jnp.take_along_axis(logp, jnp.asarray(targets)[..., None], axis=-1)[..., 0]
        return jnp.sum(ce * w)

    def ours(m):
        total, count, _ = SFTTask.loss(m, jnp.asarray(x), jnp.asarray(y))
        return total, count

    (total, count), grads = nnx.value_and_grad(ours, has_aux=True)(model)
    assert int(count) == int(weights[:, 1:].sum()) == sum(mask) + sum(mask2)
    ref_total, ref_grads = nnx.value_and_grad(reference)(model, tokens[:, 1:])
    np.testing.assert_allclose(float(total), float(ref_total), rtol=1e-5)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    # scrambling every unsupervised target changes neither the loss nor its gradient
    scrambled = np.where(weights[:, 1:] > 0, tokens[:, 1:], (tokens[:, 1:] * 7 + 3) % 512)
    s_total, s_grads = nnx.value_and_grad(reference)(model, scrambled)
    assert float(s_total) == float(ref_total)
    for a, b in zip(jax.tree.leaves(s_grads), jax.tree.leaves(ref_grads), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # and the user turn, the tool output and the padding are indeed unsupervised
    assert (y[0] >= 0).sum() < (tokens[0, 1 : len(ids)] >= 0).sum()


def test_best_fit_packs_whole_conversations() -> None:
    lengths = [50, 30, 20, 60, 40, 10, 65]
    rows = best_fit(lengths, range(len(lengths)), 65)
    assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in r) <= 65 for r in rows)
    assert rows == [[0, 5], [1, 2], [3], [4], [6]]  # 10 fills row 0 (15 free) most tightly
    with pytest.raises(ValueError, match="over the row length"):
        best_fit([66], [0], 65)


# ---------------------------------------------------------------- data: embedded and JSONL


def test_embedded_data_and_resumable_batches(base) -> None:
    task = _task(base)
    assert len(task.train) > 200 and len(task.val) > 5
    it = task.batches(None)
    seen = []
    positions = []
    while len(positions) < 3 or positions[-1]["epoch"] == 0:  # run past an epoch boundary
        seen.append(it.next())
        positions.append(dict(it.position))
    for k in (0, len(positions) - 2):
        again = task.batches(positions[k])
        x, y = again.next()
        np.testing.assert_array_equal(np.asarray(x), np.asarray(seen[k + 1][0]))
        np.testing.assert_array_equal(np.asarray(y), np.asarray(seen[k + 1][1]))
    x, y = seen[0]
    assert x.shape == (1, 4, 128) and ((np.asarray(y) >= 0).sum() > 0)


def test_jsonl_source_and_its_errors(base, tmp_path) -> None:
    path = tmp_path / "chat.jsonl"
    lines = [
        json.dumps({"prompt": f"What is {i} + {i}?", "completion": f"It is {2 * i}."})
        for i in range(40)
    ]
    path.write_text("\n".join(lines) + "\n")
    task = _task(base, f"data.source={path}", "data.val_fraction=0.1")
    assert len(task.train) + len(task.val) == 40 and task.val
    path.write_text(lines[0] + '\n{"messages": [{"role": "user", "content": "a"}, '
                    '{"role": "user", "content": "b"}]}\n')  # fmt: skip
    with pytest.raises(UserError, match=r"chat.jsonl, line 2: message 1: two user messages"):
        _task(base, f"data.source={path}")
    with pytest.raises(UserError, match=r"reads conversations from a \.jsonl file"):
        _task(base, f"data.source={tmp_path}")


# ---------------------------------------------------------------- runs


def test_sft_resumes_exactly(base, tmp_path) -> None:
    extra = ("train.num_iterations=8", "train.save_every=4")
    ref = Recorder()
    assert train(_sft_config(base, *extra), tmp_path / "straight", ref).status == "finished"
    control = ControlInbox()
    first = Recorder(stop_at=2, control=control)
    run_dir = tmp_path / "resumed"
    r1 = train(_sft_config(base, *extra), run_dir, first, control)
    assert r1.status == "stopped" and r1.step == 3  # one step late: the stop lands after step 3
    assert rundir.latest_checkpoint(run_dir).meta["stage"] == "sft"
    assert set(rundir.latest_checkpoint(run_dir).meta["data_position"]) == {"epoch", "row"}
    second = Recorder()
    r2 = train(load_config(str(run_dir / "config.yaml")), run_dir, second, resume=True)
    assert r2.status == "finished" and r2.step == 8
    combined = {**first.losses(), **second.losses()}
    assert combined == ref.losses()  # bit for bit
    assert second.of("eval")[-1]["val_loss"] == ref.of("eval")[-1]["val_loss"]


def test_sft_from_a_pretrained_checkpoint_lowers_assistant_loss(base, tmp_path) -> None:
    from nanochat_tui.jax_engine.checkpoint import resolve_step_dir, restore_into
    from nanochat_tui.jax_engine.model import GPT

    task = _task(base)
    model = GPT(task.config.model, rngs=nnx.Rngs(0))
    restore_into(resolve_step_dir(base), model)
    before = task.evaluate(model)
    rec = Recorder()
    result = train(_sft_config(base, "train.num_iterations=30"), tmp_path / "sft", rec)
    assert result.status == "finished"
    start = rec.of("run_start")[0]
    assert start["stage"] == "sft" and start["val_conversations"] == len(task.val)
    assert any("initialised weights from" in e["message"] for e in rec.of("log"))
    # the base run's tokenizer was kept, so its weights mean the same ids
    assert (tmp_path / "sft" / "tokenizer.json").read_text() == (
        base / "tokenizer.json"
    ).read_text()
    after = rec.of("eval")[-1]
    assert after["val_loss"] < 0.8 * before["val_loss"], (before, after)
    assert rec.of("sample")[-1]["samples"]


def test_chat_prefabs_are_sft_stages() -> None:
    from nanochat_tui.config import load_prefab
    from nanochat_tui.orchestrator.pipeline import plan

    config = load_prefab("sft-only")
    assert config.train.stage == "sft" and config.data.source == "embedded"
    assert "run.init_from" in config.description
    tiny, chat = load_prefab("tiny"), load_prefab("tiny-chat")
    steps = plan(chat, "x")  # tiny-chat: pretrain the tiny model, then sft on the chat set
    assert [(s.stage, s.name) for s in steps] == [("pretrain", "x.1-base"), ("sft", "x.2-sft")]
    assert steps[1].config.data.source == "embedded" and not steps[1].config.pipeline
    assert chat.model == tiny.model
    assert chat.data.tokenizer_chars == tiny.data.tokenizer_chars


def test_cli_run_sft_only_from_a_run_dir(base, tmp_path, capsys) -> None:
    from nanochat_tui.cli import main

    sets = [s for s in BASE if not s.startswith("data.")] + [
        f"run.init_from={base}", "run.name=chat", f"run.runs_dir={tmp_path}",
        "train.num_iterations=3",
    ]  # fmt: skip
    assert main(["run", "sft-only", *[a for s in sets for a in ("--set", s)]]) == 0, (
        capsys.readouterr().err
    )
    meta = rundir.latest_checkpoint(tmp_path / "chat").meta
    assert meta["stage"] == "sft" and meta["step"] == 3
    assert meta["tokenizer_hash"] == Tokenizer.load(base / "tokenizer.json").hash


def test_tiny_align_pipeline_is_pretrain_sft_dpo_matching_dpo_only() -> None:
    from nanochat_tui.config import load_prefab
    from nanochat_tui.orchestrator.pipeline import plan

    align, dpo_only = load_prefab("tiny-align"), load_prefab("dpo-only")
    steps = plan(align, "a")
    assert [(s.stage, s.name) for s in steps] == [
        ("pretrain", "a.1-base"),
        ("sft", "a.2-sft"),
        ("dpo", "a.3-dpo"),
    ]
    dpo = steps[2].config
    assert dpo.model == dpo_only.model and dpo.pref == dpo_only.pref
    assert dpo.optim.lr_multiplier == dpo_only.optim.lr_multiplier
    assert dpo.train.total_batch_size == dpo_only.train.total_batch_size
    assert dpo.data.val_fraction == dpo_only.data.val_fraction
    assert (
        steps[1].config.train.num_iterations
        == load_prefab("tiny-chat").pipeline[1].set["train.num_iterations"]
    )
