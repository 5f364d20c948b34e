"""Train loop end to end on a tiny model: events, checkpoint meta, exact resume, control, NaN, chat."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers import Recorder
from nanochat_tui import rundir
from nanochat_tui.config import load_config
from nanochat_tui.errors import IncompatibleCheckpoint
from nanochat_tui.jax_engine.control import ControlInbox
from nanochat_tui.jax_engine.train import train

N = 12
TINY = [
    "model.depth=1",
    "model.sequence_len=64",
    "model.vocab_size=512",
    "data.max_chars=300000",
    "data.tokenizer_chars=100000",
    "train.device_batch_size=4",
    "train.total_batch_size=512",  # 2 micro-batches: exercises gradient accumulation
    f"train.num_iterations={N}",
    "train.eval_every=6",
    "train.sample_every=6",
    "train.save_every=4",
    "train.keep_checkpoints=2",
    "train.eval_tokens=2048",
]


def _config(*extra: str):
    return load_config("tiny", [*TINY, *extra])


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("home")
    mp.setenv("NANOCHAT_TUI_HOME", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="module")
def straight(home, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "straight"
    rec = Recorder()
    result = train(_config(), run_dir, rec)
    return run_dir, rec, result


def test_straight_run_events_and_result(straight) -> None:
    run_dir, rec, result = straight
    assert result.status == "finished" and result.step == N
    kinds = [e["type"] for e in rec.events]
    assert kinds.count("run_start") == 1 and kinds[-1] == "run_end"
    start = rec.of("run_start")[0]
    assert start["num_iterations"] == N and start["tokens_per_step"] == 512
    steps = rec.of("step")
    assert [e["step"] for e in steps] == list(range(1, N + 1))
    for key in (
        "loss",
        "lr",
        "tokens_per_s",
        "step_time",
        "data_wait",
        "compute_time",
        "host_time",
        "grad_norm",
    ):
        assert steps[-1][key] is not None, key
    assert steps[-1]["loss"] < steps[0]["loss"]
    assert all(e["grad_norm"] > 0 for e in steps)  # the pre-clip global norm, every step
    evals = rec.of("eval")
    assert [e["step"] for e in evals] == [6, N]
    assert evals[-1]["val_bpb"] == result.final_val_bpb
    assert [e["step"] for e in rec.of("sample")] == [6, N]
    assert all(
        s["prompt"] and isinstance(s["completion"], str) for s in rec.of("sample")[0]["samples"]
    )
    assert [(e["step"], e["reason"]) for e in rec.of("checkpoint")] == [
        (4, "interval"),
        (8, "interval"),
        (N, "final"),
    ]
    assert (run_dir / "config.yaml").is_file() and (run_dir / "tokenizer.json").is_file()


def test_checkpoint_meta_contents(straight) -> None:
    run_dir, _, result = straight
    ckpts = rundir.list_checkpoints(run_dir)
    assert [c.step for c in ckpts] == [8, N]  # keep_checkpoints=2
    meta = ckpts[-1].meta
    for key in (
        "step", "run_name", "stage", "model", "model_dim", "n_head", "n_kv_head", "vocab_size",
        "sequence_len", "tokenizer_hash", "data_position", "val_bpb", "train_loss", "time",
        "config", "plugins",
    ):  # fmt: skip
        assert key in meta, key
    assert meta["step"] == N and meta["stage"] == "pretrain" and meta["run_name"] == "straight"
    assert meta["reason"] == "final"
    assert meta["metrics"]["val_bpb"] == {"value": result.final_val_bpb, "step": N}
    assert meta["metrics"]["train_loss"]["step"] == N
    interval = ckpts[0].meta  # step 8: the last eval was at step 6, and the meta says so
    assert interval["reason"] == "interval" and interval["metrics"]["val_bpb"]["step"] == 6
    assert interval["metrics"]["train_loss"]["step"] == 8
    assert meta["model_dim"] == 64 and meta["vocab_size"] == 512 and meta["sequence_len"] == 64
    assert meta["model"]["depth"] == 1
    assert meta["switches"]["model.recipe"] == "nanochat-2025" and meta["hf_unloadable"] == []
    assert meta["switches"]["model.smear"] is False and meta["switches"]["model.rope_base"] == 10000
    assert set(meta["data_position"]) == {"epoch", "index"}
    assert meta["val_bpb"] == result.final_val_bpb
    from nanochat_tui.jax_engine.tokenizer import Tokenizer

    assert meta["tokenizer_hash"] == Tokenizer.load(run_dir / "tokenizer.json").hash


def test_exact_resume_reproduces_losses(straight, tmp_path) -> None:
    _, ref, _ = straight
    run_dir = tmp_path / "resumed"
    control = ControlInbox()
    first = Recorder(stop_at=5, control=control)
    r1 = train(_config(), run_dir, first, control)
    # step 5's event is emitted once step 6 is dispatched (one step late), so the stop lands after 6
    assert r1.status == "stopped" and r1.step == 6
    assert first.of("checkpoint")[-1]["reason"] == "stop"
    second = Recorder()
    r2 = train(_config(), run_dir, second, resume=True)
    assert r2.status == "finished" and r2.step == N
    assert second.of("run_start")[0]["resumed_from_step"] == 6
    combined = {**first.losses(), **second.losses()}
    assert sorted(combined) == list(range(1, N + 1))
    assert combined == ref.losses()  # bit for bit
    assert r2.final_val_bpb == ref.of("eval")[-1]["val_bpb"]


def test_patch_and_manual_checkpoint(home, tmp_path) -> None:
    control = ControlInbox()
    control.patch({"optim.lr_multiplier": 0.5, "train.num_iterations": 3})
    control.patch({"model.depth": 4})
    control.checkpoint_now()
    rec = Recorder()
    result = train(
        _config("train.eval_every=0", "train.sample_every=0"), tmp_path / "p", rec, control
    )
    assert result.step == 3
    ok, bad = rec.of("patch")
    assert ok["ok"] and ok["changes"] == {"optim.lr_multiplier": 0.5, "train.num_iterations": 3}
    assert not bad["ok"] and "model.depth" in bad["message"]
    assert rec.of("step")[1]["lr_multiplier"] == 0.5
    assert ("manual", 1) in [(e["reason"], e["step"]) for e in rec.of("checkpoint")]
    assert load_config(str(tmp_path / "p" / "config.yaml")).train.num_iterations == 3


def test_nan_loss_stops_with_clear_error(home, tmp_path, monkeypatch) -> None:
    """Inject a NaN learning rate after step 4 (a real NaN through the real step) → error event."""
    import nanochat_tui.jax_engine.step as step_mod

    real = step_mod.make_train_step

    def poisoned(model, optimizer, *loss):
        inner, calls = real(model, optimizer, *loss), []

        def step(model, optimizer, x, y, lr_scale, grad_clip=None):
            calls.append(1)
            return inner(
                model, optimizer, x, y, float("nan") if len(calls) > 4 else lr_scale, grad_clip
            )

        step.sync = inner.sync  # the stacked step writes its state back before reads
        return step

    monkeypatch.setattr(step_mod, "make_train_step", poisoned)
    rec = Recorder()
    result = train(_config("train.eval_every=0", "train.sample_every=0"), tmp_path / "nan", rec)
    assert result.status == "failed" and result.step == 6
    (err,) = rec.of("error")
    assert err["kind"] == "nan"
    assert err["last_checkpoint"].endswith("checkpoints/4")
    assert "diverged" in err["message"] and "checkpoints/4" in err["message"]
    assert "lr_multiplier" in err["remediation"]
    assert rec.events[-1]["type"] == "run_end" and rec.events[-1]["status"] == "failed"
    assert "checkpoints/4" in result.error


def test_out_of_memory_fails_with_a_remediation(home, tmp_path, monkeypatch) -> None:
    """The device's own OOM error (raised where the step would raise it) → one clear error event."""
    import jax

    import nanochat_tui.jax_engine.step as step_mod

    real = step_mod.make_train_step

    def exhausted(model, optimizer, *loss):
        inner, calls = real(model, optimizer, *loss), []

        def step(*args, **kwargs):
            calls.append(1)
            if len(calls) > 2:
                raise jax.errors.JaxRuntimeError(
                    "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 81.00GiB."
                )
            return inner(*args, **kwargs)

        step.sync = inner.sync  # the stacked step writes its state back before reads
        return step

    monkeypatch.setattr(step_mod, "make_train_step", exhausted)
    rec = Recorder()
    result = train(_config("train.eval_every=0", "train.sample_every=0"), tmp_path / "oom", rec)
    assert result.status == "failed" and result.step == 2
    (err,) = rec.of("error")
    assert err["kind"] == "oom" and "out of device memory at step 2" in err["message"]
    assert "train.device_batch_size (now 4)" in err["remediation"]
    assert "Traceback" not in result.error and "device_batch_size" in result.error
    assert rec.events[-1]["type"] == "run_end" and rec.events[-1]["status"] == "failed"


def test_resume_refuses_an_optimizer_state_of_another_layout(straight) -> None:
    """An optimizer whose state the checkpoint lacks (another version's layout) is refused with
    a remediation that keeps the weights, never half-loaded."""
    import optax
    from flax import nnx

    from nanochat_tui.jax_engine.checkpoint import restore_into
    from nanochat_tui.jax_engine.model import GPT

    step_dir = rundir.latest_checkpoint(straight[0]).path
    model = GPT(_config().model, rngs=nnx.Rngs(0))
    other = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    with pytest.raises(IncompatibleCheckpoint, match="another layout") as info:
        restore_into(step_dir, model, other)
    assert f"run.init_from={step_dir}" in info.value.remediation
    restore_into(step_dir, model)  # the weights alone still load


def test_chat_streams_a_reply(straight) -> None:
    from nanochat_tui.jax_engine.inference import ChatModel

    cm = ChatModel.load(straight[0])
    assert cm.meta["step"] == N and cm.tokenizer.vocab_size == 512
    pieces = list(cm.chat([{"role": "user", "content": "hello"}], max_tokens=8, seed=1))
    assert pieces and all(isinstance(p, str) for p in pieces)
    stats = cm.last_stats
    assert stats["prompt_tokens"] > 3 and 1 <= stats["completion_tokens"] <= 8
    assert stats["ttft_s"] is not None
    again = list(cm.chat([{"role": "user", "content": "hello"}], max_tokens=8, seed=1))
    assert again == pieces  # same seed, same reply
    text = "".join(cm.complete("def ", max_tokens=6, temperature=0))
    assert isinstance(text, str)


def test_tokenizer_mismatch_is_incompatible(straight, tmp_path) -> None:
    from nanochat_tui.jax_engine.inference import ChatModel
    from nanochat_tui.jax_engine.tokenizer import Tokenizer

    copy = tmp_path / "copy"
    shutil.copytree(straight[0], copy)
    other = Tokenizer.train(["completely different text " * 50, "ünïcödé"], 300)
    other.save(copy / "tokenizer.json")
    with pytest.raises(IncompatibleCheckpoint) as info:
        ChatModel.load(copy)
    assert "tokenizer" in str(info.value) and info.value.remediation
    with pytest.raises(IncompatibleCheckpoint):
        train(_config(), Path(copy), Recorder(), resume=True)
