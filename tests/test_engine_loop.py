"""The generic loop: token-weighted accumulation, one-step-late reads, start-up phases, stages,
divergence, damaged checkpoints, refused resumes and pinned checkpoints (tiny runs on CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from helpers import tiny_overrides
from nanochat_tui import rundir
from nanochat_tui.config import load_config
from nanochat_tui.errors import ResumeRefused
from nanochat_tui.jax_engine.control import ControlInbox
from nanochat_tui.jax_engine.divergence import DivergenceWatch
from nanochat_tui.jax_engine.train import train
from nanochat_tui.telemetry.events import PHASES


def _config(**changes):
    return load_config("tiny", tiny_overrides(changes))


class Recorder:
    def __init__(self, on_step=None) -> None:
        self.events: list[dict] = []
        self.on_step = on_step

    def __call__(self, event: dict) -> None:
        json.dumps(event)
        self.events.append(event)
        if event["type"] == "step" and self.on_step:
            self.on_step(event)

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]


# ---------------------------------------------------------------- step: token-weighted accumulation


def test_accumulation_is_token_weighted_over_uneven_masks() -> None:
    """Two micro-batches with 128 and 5 supervised tokens give exactly the loss, gradient and
    update of one batch holding both (fp32); the old mean of micro-batch means would not."""
    from nanochat_tui.jax_engine.model import GPT, token_losses
    from nanochat_tui.jax_engine.step import make_train_step

    config = _config()
    rng = np.random.default_rng(0)
    x = rng.integers(0, 512, (2, 2, 64), dtype=np.int32)
    y = rng.integers(0, 512, (2, 2, 64), dtype=np.int32)
    y[1] = -1
    y[1, 0, :5] = rng.integers(0, 512, 5)  # micro-batch 1 supervises 5 tokens, micro-batch 0 128

    def make_model():
        """nanochat zero-inits the lm head (every token's loss would be ln V): randomise it."""
        model = GPT(config.model, rngs=nnx.Rngs(3))
        head = model.lm_head.kernel
        head[...] = 0.5 * jax.random.normal(jax.random.key(1), head[...].shape)
        return model

    def run(xs, ys):
        model = make_model()
        tx = optax.with_extra_args_support(optax.sgd(0.5))
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        out = make_train_step(model, optimizer)(model, optimizer, xs, ys, 1.0)
        params = [np.asarray(p) for p in jax.tree.leaves(nnx.state(model, nnx.Param))]
        return out, params

    micro, p_micro = run(x, y)
    whole, p_whole = run(x.reshape(1, 4, 64), y.reshape(1, 4, 64))
    assert float(micro.tokens) == float(whole.tokens) == 133
    assert float(micro.loss) == pytest.approx(float(whole.loss), rel=1e-6)
    assert float(micro.grad_norm) == pytest.approx(float(whole.grad_norm), rel=1e-5)
    for a, b in zip(p_micro, p_whole, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)

    # the reference: Σ CE / count over the whole batch, and what the unweighted mean would give
    model = make_model()
    ce = [np.asarray(token_losses(model, jnp.asarray(x[i]), jnp.asarray(y[i]))) for i in (0, 1)]
    counts = [int((y[i] >= 0).sum()) for i in (0, 1)]
    assert float(micro.loss) == pytest.approx((ce[0].sum() + ce[1].sum()) / 133, rel=1e-6)
    unweighted = (ce[0].sum() / counts[0] + ce[1].sum() / counts[1]) / 2
    assert abs(unweighted - float(micro.loss)) > 1e-3


# ---------------------------------------------------------------- one run: phases, late reads, stage


class _Probe:
    """A step output that records when the host reads it, relative to the steps dispatched."""

    def __init__(self, value, index: int, log: list, dispatched: list) -> None:
        self.value, self.index, self.log, self.dispatched = value, index, log, dispatched

    def __float__(self) -> float:
        self.log.append((self.index, len(self.dispatched)))
        return float(self.value)


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    """A 5-step run whose step outputs are probes (no eval/sample/save cadence inside it)."""
    import nanochat_tui.jax_engine.step as step_mod

    mp = pytest.MonkeyPatch()
    mp.setenv("NANOCHAT_TUI_HOME", str(tmp_path_factory.mktemp("home")))
    real = step_mod.make_train_step
    reads: list[tuple[int, int]] = []
    dispatched: list[int] = []

    def probing(model, optimizer, *loss):
        inner = real(model, optimizer, *loss)

        def step(*args, **kwargs):
            out = inner(*args, **kwargs)
            dispatched.append(1)
            n = len(dispatched)
            return out._replace(
                loss=_Probe(out.loss, n, reads, dispatched),
                grad_norm=_Probe(out.grad_norm, n, reads, dispatched),
            )

        step.sync = inner.sync  # the stacked step writes its state back before reads
        return step

    mp.setattr(step_mod, "make_train_step", probing)
    rec = Recorder()
    run_dir = tmp_path_factory.mktemp("runs") / "probed"
    result = train(_config(**{"train.num_iterations": 5}), run_dir, rec)
    mp.undo()
    return result, rec, reads


def test_the_loop_never_reads_the_step_it_just_dispatched(probed) -> None:
    result, rec, reads = probed
    assert result.status == "finished" and result.step == 5
    assert {index for index, _ in reads} == {1, 2, 3, 4, 5}
    early = [(index, seen) for index, seen in reads if seen <= index]
    assert early == [(5, 5), (5, 5)]  # only the last step, flushed at the end (loss, grad_norm)
    assert [e["step"] for e in rec.of("step")] == [1, 2, 3, 4, 5]


def test_phases_come_in_order_before_the_first_step(probed) -> None:
    _, rec, _ = probed
    phases = rec.of("phase")
    assert tuple(e["phase"] for e in phases) == PHASES
    elapsed = [e["elapsed_s"] for e in phases]
    assert elapsed == sorted(elapsed) and elapsed[0] >= 0
    first_step = next(i for i, e in enumerate(rec.events) if e["type"] == "step")
    last_phase = max(i for i, e in enumerate(rec.events) if e["type"] == "phase")
    assert last_phase < first_step
    assert "compiled in" in phases[PHASES.index("first_step")]["detail"]


def test_stage_is_recorded(probed) -> None:
    result, rec, _ = probed
    (start,) = rec.of("run_start")
    assert start["stage"] == "pretrain" and start["devices_used"] == 1
    meta = rundir.read_meta(result.last_checkpoint)
    assert meta["stage"] == "pretrain" and meta["reason"] == "final"


def test_every_built_in_stage_is_one_registry_entry() -> None:
    """train.stage accepts exactly the registered stages; each resolves to its Task class."""
    from nanochat_tui.builtins import BUILTINS
    from nanochat_tui.config import ConfigError, load_config
    from nanochat_tui.errors import UserError
    from nanochat_tui.jax_engine.tasks import Task, get_task
    from nanochat_tui.registry import StageEntry

    stages = [e.name for e in BUILTINS if isinstance(e, StageEntry)]
    assert stages == ["pretrain", "sft", "dpo", "orpo", "simpo"]
    for stage in stages:
        cls = get_task(stage)
        assert issubclass(cls, Task) and cls.stage == stage
        assert load_config("tiny", [f"train.stage={stage}"]).train.stage == stage
    with pytest.raises(ConfigError, match="unknown stage 'rlhf'; use one of pretrain, sft"):
        load_config("tiny", ["train.stage=rlhf"])
    with pytest.raises(UserError, match="unknown training stage 'rlhf'"):
        get_task("rlhf")


# ---------------------------------------------------------------- divergence


def test_divergence_watch_needs_a_streak() -> None:
    watch = DivergenceWatch(factor=2.0, steps=3)
    normal = [6.2, 5.0, 4.1, 4.6, 3.9, 4.4, 3.6, 5.1, 3.5]  # noisy but healthy
    assert not any(watch.update(i, loss) for i, loss in enumerate(normal, 1))
    best = watch.best
    assert [watch.update(i, loss) for i, loss in enumerate([1e3, 2e3, 5e3, 9e3, 9e3], 10)] == [
        False, False, True, False, False,
    ]  # fmt: skip
    assert watch.streak_start == 10 and watch.best == best
    assert watch.first_bad == 10  # the raw loss went over at once
    for i in range(15, 80):  # back to health: the streak ends once the smoothed loss comes down
        watch.update(i, 3.0)
    assert watch.streak == 0 and watch.first_bad is None


def test_first_bad_is_the_raw_crossing_and_lasts_until_calm() -> None:
    """The smoothed loss lags: first_bad marks the first raw loss over the threshold (rotation
    keeps the checkpoint before it) and is released after `steps` calm steps."""
    watch = DivergenceWatch(factor=2.0, steps=3)
    for i, loss in enumerate([4.0, 3.9, 3.8, 3.8], 1):
        watch.update(i, loss)
    assert not watch.update(5, 9.0) and watch.first_bad == 5 and watch.streak == 0
    for i in range(6, 8):
        watch.update(i, 3.8)
    assert watch.first_bad == 5  # two calm steps of three
    watch.update(8, 3.8)
    assert watch.first_bad is None


def test_one_lucky_batch_is_not_a_best_to_diverge_from() -> None:
    """Regression: a tiny run (256-token batches) hit one loss of 0.71 among ~2.7s; the raw
    minimum made the healthy run look diverged 20 steps later."""
    import random

    rng = random.Random(0)
    watch = DivergenceWatch(factor=2.0, steps=20)
    losses = [7.0 - 4.3 * min(1, i / 200) + rng.uniform(-0.5, 0.5) for i in range(1000)]
    losses[900] = 0.7143
    assert not any(watch.update(i, loss) for i, loss in enumerate(losses, 1))


def test_exploding_loss_stops_naming_the_last_good_checkpoint(tmp_path) -> None:
    """Every lr at its maximum from step 3 on (≈ the issue's 2e5 case, softcap off): a finite but
    exploding loss stops the run as failed, naming a checkpoint from before it began."""
    control = ControlInbox()

    def on_step(event):
        if event["step"] == 2:
            control.patch({"optim.lr_multiplier": 100})

    rec = Recorder(on_step)
    config = _config(
        **{
            "train.num_iterations": 40,
            "train.save_every": 2,
            "train.keep_checkpoints": 50,
            "train.divergence_steps": 4,
            "model.softcap": 0,
            "optim.matrix_lr": 10,
            "optim.embedding_lr": 100,
            "optim.unembedding_lr": 10,
            "optim.lr_multiplier": 0.001,
        }
    )
    result = train(config, tmp_path / "boom", rec, control)
    assert result.status == "failed" and result.step < 40
    (err,) = rec.of("error")
    assert err["kind"] == "diverged" and "diverged" in err["message"]
    losses = {e["step"]: e["loss"] for e in rec.of("step")}
    best = min(losses.values())
    first_bad = min(s for s, v in losses.items() if v > 2 * best and s > 2)
    good = Path(err["last_checkpoint"])
    assert int(good.name) < first_bad - 1 and str(good) in err["message"]
    assert "lr_multiplier" in err["remediation"] and "divergence" in err["remediation"]
    assert rec.events[-1]["type"] == "run_end" and rec.events[-1]["status"] == "failed"


def test_divergence_keeps_the_good_checkpoint_from_rotation_and_resumes_from_it(
    tmp_path,
) -> None:
    """Issue 25.6: `control RUN patch optim.lr_multiplier=100 optim.grad_clip=0` mid-run, a save
    every 2 steps, 2 kept. The raw loss blows up at once, the smoothed watch fires steps later:
    by then rotation had deleted every checkpoint from before, and the stop said "no checkpoint
    was saved before it … start again". Now rotation keeps the newest one from before the first
    raw loss over the threshold, the stop names it, sets the later ones aside, and its --resume
    line with a lower lr continues from it."""
    from nanochat_tui import cli

    control = ControlInbox()

    def on_step(event):
        if event["step"] == 6:
            control.patch({"optim.lr_multiplier": 100, "optim.grad_clip": 0})

    rec = Recorder(on_step)
    config = _config(
        **{
            "train.num_iterations": 30,
            "train.save_every": 2,
            "train.keep_checkpoints": 2,
            "train.divergence_steps": 6,
            "model.softcap": 0,
            "optim.matrix_lr": 10,
            "optim.embedding_lr": 100,
            "optim.unembedding_lr": 10,
            "optim.lr_multiplier": 0.001,
        }
    )
    run_dir = tmp_path / "boom"
    result = train(config, run_dir, rec, control)
    assert result.status == "failed"
    (err,) = rec.of("error")
    assert err["kind"] == "diverged"
    losses = {e["step"]: e["loss"] for e in rec.of("step")}
    replay = DivergenceWatch(2.0, 6)
    first_bad = next(s for s, v in losses.items() if (replay.update(s, v), replay.first_bad)[1])
    saved = [e["step"] for e in rec.of("checkpoint")]
    good = max(s for s in saved if s < first_bad - 1)
    assert max(saved) - good > 2 * 2, "rotation would have removed it: the test proves nothing"
    good_dir = run_dir / "checkpoints" / str(good)
    assert err["last_checkpoint"] == str(good_dir) and result.last_checkpoint == good_dir
    assert f"first went over at step {first_bad}" in err["message"]
    assert f"last good checkpoint: {good_dir}" in err["message"]
    # the ones saved since are set aside (not deleted), so the good one is the run's latest
    assert rundir.latest_checkpoint(run_dir).step == good
    aside = sorted(int(p.name.split(".")[0]) for p in good_dir.parent.glob("*.diverged-*"))
    assert aside and min(aside) > good
    line = f"nanochat-tui run --resume {run_dir} --set optim.lr_multiplier=0.0005"
    assert f"`{line} --set optim.grad_clip=1`" in err["remediation"]
    # the printed line works: it resumes from the good checkpoint and trains to the end
    argv = err["remediation"].split("`")[1].split()
    assert cli.main([*argv[1:], "--quiet"]) == 0
    resumed = [json.loads(s) for s in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["resumed_from_step"] for e in resumed if e["type"] == "run_start"] == [good]
    assert resumed[-1]["type"] == "run_end" and resumed[-1]["status"] == "finished"


def test_nan_at_the_first_step_blames_the_config_not_the_lr(tmp_path) -> None:
    from nanochat_tui.jax_engine.divergence import nonfinite_settings

    config = _config(**{"train.num_iterations": 3})
    # Validation refuses inf (test_hardening); a config that got past it (hand-built, or an older
    # run's) must still get a message that names it rather than blaming the learning rate.
    config.model.__dict__["softcap"] = float("inf")
    assert nonfinite_settings(config) == ["model.softcap=inf"]
    rec = Recorder()
    result = train(config, tmp_path / "inf", rec)
    assert result.status == "failed" and result.step == 1
    (err,) = rec.of("error")
    assert "at step 1" in err["message"] and "model.softcap=inf" in err["remediation"]
    assert "lr_multiplier" not in err["remediation"]


# ---------------------------------------------------------------- damage, refusal, pins


@pytest.fixture(scope="module")
def six(tmp_path_factory):
    """A 6-step run with checkpoints at 2, 4 (interval, saved asynchronously) and 6 (final)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("NANOCHAT_TUI_HOME", str(tmp_path_factory.mktemp("home")))
    run_dir = tmp_path_factory.mktemp("runs") / "six"
    rec = Recorder()
    config = _config(**{"train.num_iterations": 6, "train.save_every": 2})
    result = train(config, run_dir, rec)
    mp.undo()
    assert [c.step for c in rundir.list_checkpoints(run_dir)] == [2, 4, 6]
    return run_dir, rec, result


def _copy_run(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def _largest_file(folder: Path) -> Path:
    return max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)


def test_damaged_checkpoint_refuses_the_resume_cleanly(six, tmp_path) -> None:
    """A truncated data file: "checkpoint 6 is damaged", the newest intact one (4) offered, no
    event emitted, config untouched, and no stray asyncio tracebacks on stderr."""
    run_dir = _copy_run(six[0], tmp_path / "damaged")
    victim = _largest_file(run_dir / "checkpoints" / "6" / "state")
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
    config_before = (run_dir / "config.yaml").read_bytes()
    script = (
        "import sys\n"
        "from nanochat_tui.config import load_config\n"
        "from nanochat_tui.errors import ResumeRefused\n"
        "from nanochat_tui.jax_engine.train import train\n"
        "events = []\n"
        f"config = load_config({str(run_dir / 'config.yaml')!r})\n"
        "try:\n"
        f"    train(config, {str(run_dir)!r}, events.append, resume=True)\n"
        "except ResumeRefused as err:\n"
        "    print('REFUSED', err.message)\n"
        "    print('FIX', err.remediation)\n"
        "print('EVENTS', len(events))\n"
    )
    env = {**os.environ, "NANOCHAT_TUI_HOME": str(tmp_path / "home")}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300
    )
    assert "REFUSED checkpoint 6 is damaged" in proc.stdout, proc.stdout + proc.stderr
    rel = victim.relative_to(run_dir / "checkpoints" / "6")
    assert f": {rel} is " in proc.stdout and " when saved (truncated)" in proc.stdout
    assert "newest intact checkpoint is step 4" in proc.stdout
    for junk in ("pybind11", "bound method", "TensorStore details"):
        assert junk not in proc.stdout
    assert "EVENTS 0" in proc.stdout
    for noise in ("Event loop is closed", "Exception ignored", "Traceback"):
        assert noise not in proc.stderr, proc.stderr[-3000:]
    assert (run_dir / "config.yaml").read_bytes() == config_before
    assert not (run_dir / "events.jsonl").exists()


def test_committed_checkpoints_record_their_files(six, tmp_path) -> None:
    """Each committed checkpoint records its files' sizes, so a listing (the Checkpoints pane,
    no JAX) tells a data file cut short or deleted since, naming it."""
    from nanochat_tui import checkpoint_files

    for c in rundir.list_checkpoints(six[0]):
        assert (c.path / checkpoint_files.FILES).is_file()
        assert checkpoint_files.damage(c.path) is None
    run_dir = _copy_run(six[0], tmp_path / "cut")
    victim = _largest_file(run_dir / "checkpoints" / "6" / "state")
    size = victim.stat().st_size
    victim.write_bytes(victim.read_bytes()[:100])
    rel = victim.relative_to(run_dir / "checkpoints" / "6")
    assert checkpoint_files.damage(run_dir / "checkpoints" / "6") == (
        f"{rel} is 100 bytes, {size:,} when saved (truncated)"
    )
    victim.unlink()
    assert checkpoint_files.damage(run_dir / "checkpoints" / "6") == f"{rel} is missing"
    assert checkpoint_files.damage(run_dir / "checkpoints" / "4") is None


def test_a_damaged_checkpoint_without_a_record_is_named_in_our_words(six, tmp_path) -> None:
    """A checkpoint saved before sizes were recorded: orbax's own message for the failed read
    ("See full TensorStore details: <bound method pybind11_…>") becomes one line of ours."""
    from nanochat_tui import checkpoint_files
    from nanochat_tui.errors import IncompatibleCheckpoint
    from nanochat_tui.jax_engine import checkpoint as ckpt
    from nanochat_tui.jax_engine.model import GPT

    run_dir = _copy_run(six[0], tmp_path / "old")
    step_dir = run_dir / "checkpoints" / "6"
    (step_dir / checkpoint_files.FILES).unlink(missing_ok=True)
    victim = _largest_file(step_dir / "state")
    victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 3])
    assert checkpoint_files.damage(step_dir) is None  # sizes unknown: only loading tells
    config = load_config(str(run_dir / "config.yaml"))
    with pytest.raises(IncompatibleCheckpoint) as caught:
        ckpt.restore_into(step_dir, GPT(config.model, rngs=nnx.Rngs(0)))
    message = caught.value.message
    assert message.startswith(f"checkpoint 6 is damaged ({step_dir}): array ")
    assert message.endswith("cannot be read: its data file is shorter than when it was saved")
    assert "\n" not in message and "pybind" not in message and "bound method" not in message
    assert "newest intact checkpoint is step 4" in caught.value.remediation


def test_orbax_abandoned_read_tasks_stay_off_the_terminal() -> None:
    """CI once showed asyncio's "Task exception was never retrieved" with orbax's read error on
    stderr after a damaged checkpoint (it depends on when the abandoned task is collected). A
    task failing inside orbax code is logged at debug; any other task's error still shows."""
    script = (
        "import asyncio, gc, logging\n"
        "logging.basicConfig()\n"
        "from nanochat_tui.jax_engine.checkpoint import _route_orbax_unraisable\n"
        "_route_orbax_unraisable()\n"
        "fake = {}\n"
        "exec(compile('async def read():\\n    raise ValueError(\"OUT_OF_RANGE shard\")\\n',\n"
        "             '/site-packages/orbax/checkpoint/serialization.py', 'exec'), fake)\n"
        "async def ours():\n"
        "    raise ValueError('not orbax')\n"
        "async def main():\n"
        "    global a, b\n"
        "    a = asyncio.ensure_future(fake['read']())\n"
        "    b = asyncio.ensure_future(ours())\n"
        "    await asyncio.sleep(0.01)\n"
        "asyncio.run(main())\n"
        "del a, b\n"
        "gc.collect()\n"
        "print('DONE')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert "DONE" in proc.stdout, proc.stderr
    assert proc.stderr.count("Task exception was never retrieved") == 1, proc.stderr
    assert "not orbax" in proc.stderr
    assert "OUT_OF_RANGE" not in proc.stderr


def test_refused_resume_emits_nothing(six, tmp_path) -> None:
    run_dir = _copy_run(six[0], tmp_path / "notok")
    (run_dir / "tokenizer.json").unlink()
    rec = Recorder()
    with pytest.raises(ResumeRefused, match=r"tokenizer\.json"):
        train(load_config(str(run_dir / "config.yaml")), run_dir, rec, resume=True)
    assert rec.events == []


def test_truncated_metadata_warns_and_resumes_exactly(six, tmp_path) -> None:
    """Checkpoint 6's metadata truncated: a warning names it, the resume continues from 4 (saved
    asynchronously while training went on) and reproduces the straight run's losses."""
    straight = {e["step"]: e["loss"] for e in six[1].of("step")}
    run_dir = _copy_run(six[0], tmp_path / "meta")
    meta = rundir.meta_path(run_dir / "checkpoints" / "6")
    meta.write_text(meta.read_text()[:40])
    assert rundir.damaged_checkpoints(run_dir) == [run_dir / "checkpoints" / "6"]
    rec = Recorder()
    result = train(load_config(str(run_dir / "config.yaml")), run_dir, rec, resume=True)
    warnings = [e["message"] for e in rec.of("log") if e["level"] == "warning"]
    assert any("checkpoint 6 has unreadable metadata" in w for w in warnings), warnings
    assert rec.of("run_start")[0]["resumed_from_step"] == 4
    assert result.status == "finished" and result.step == 6
    assert {e["step"]: e["loss"] for e in rec.of("step")} == {5: straight[5], 6: straight[6]}
    assert any(p.name.startswith("6.damaged-") for p in (run_dir / "checkpoints").iterdir())


def test_manual_and_pinned_checkpoints_survive_rotation(tmp_path) -> None:
    control = ControlInbox()
    run_dir = tmp_path / "pins"

    def on_step(event):
        if event["step"] == 1:
            rundir.set_pinned(run_dir, 1, True)  # the user pins step 1 while it is being saved
            control.checkpoint_now()

    rec = Recorder(on_step)
    config = _config(
        **{"train.num_iterations": 7, "train.save_every": 1, "train.keep_checkpoints": 2}
    )
    result = train(config, run_dir, rec, control)
    assert result.status == "finished"
    (manual,) = [e["step"] for e in rec.of("checkpoint") if e["reason"] == "manual"]
    kept = rundir.list_checkpoints(run_dir)
    assert [c.step for c in kept] == [1, manual, 6, 7]
    assert [c.pinned for c in kept] == [True, True, False, False]
    assert rundir.read_pins(run_dir) == {1, manual}
    assert not (run_dir / "checkpoints" / rundir.TRASH).exists()
    rundir.set_pinned(run_dir, 1, False)
    assert rundir.read_pins(run_dir) == {manual}


def test_refused_resume_through_the_runner_leaves_record_and_events(six, tmp_path) -> None:
    """The orchestrator's execute(): a refused resume puts run.json back and adds no event."""
    from nanochat_tui.orchestrator.runner import execute

    run_dir = _copy_run(six[0], tmp_path / "rec")
    (run_dir / "tokenizer.json").unlink()
    (run_dir / "run.json").write_text('{"name": "rec", "status": "stopped"}\n')
    (run_dir / "events.jsonl").write_text('{"type": "run_end", "time": 1, "step": 6}\n')
    before = {n: (run_dir / n).read_bytes() for n in ("run.json", "events.jsonl", "config.yaml")}
    with pytest.raises(ResumeRefused):
        execute(load_config(str(run_dir / "config.yaml")), run_dir, resume=True)
    assert {n: (run_dir / n).read_bytes() for n in before} == before
