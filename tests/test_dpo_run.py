"""DPO runs: the reference is the frozen starting checkpoint (live and precomputed agree, it never
changes while the policy trains), exact resume, held-out evaluation, and clear refusals."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jax
import numpy as np
import pytest
from flax import nnx

from helpers import Recorder, tiny_overrides
from nanochat_tui import rundir
from nanochat_tui.config import load_config
from nanochat_tui.errors import UserError
from nanochat_tui.jax_engine.control import ControlInbox
from nanochat_tui.jax_engine.tokenizer import Tokenizer
from nanochat_tui.jax_engine.train import train


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """A tiny pretrained run: its checkpoint starts (and is the reference of) every DPO here."""
    mp = pytest.MonkeyPatch()
    mp.setenv("NANOCHAT_TUI_HOME", str(tmp_path_factory.mktemp("home")))
    run_dir = tmp_path_factory.mktemp("runs") / "base"
    result = train(
        load_config("tiny", tiny_overrides({"train.num_iterations": 3})), run_dir, Recorder()
    )
    mp.undo()
    assert result.status == "finished"
    return run_dir


@pytest.fixture
def prefs(tmp_path) -> Path:
    path = tmp_path / "prefs.jsonl"
    rows = [
        {"id": f"p{i}", "prompt": f"What is {i} + {i}?", "chosen": f"It is {2 * i}.",
         "rejected": f"It is {2 * i + 1}, I think."}
        for i in range(24)
    ]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(base: Path, prefs: Path, **changes):
    settings = {
        "train.stage": "dpo", "run.init_from": str(base), "data.source": str(prefs),
        "data.val_fraction": 0.2, "train.num_iterations": 4, **changes,
    }  # fmt: skip
    return load_config("tiny", tiny_overrides({k: v for k, v in settings.items() if v is not None}))


def _task(base: Path, prefs: Path, **changes):
    from nanochat_tui.jax_engine.tasks.dpo import DPOTask

    logs: list[str] = []
    task = DPOTask(
        _config(base, prefs, **changes), Tokenizer.load(base / "tokenizer.json"), logs.append
    )
    task.prepare()
    return task, logs


def _params(model) -> list[np.ndarray]:
    return [np.array(a) for a in jax.tree.leaves(nnx.state(model, nnx.Param))]


def test_live_and_precomputed_reference_agree_and_the_reference_stays_frozen(base, prefs) -> None:
    from nanochat_tui.jax_engine.checkpoint import resolve_step_dir, restore_into
    from nanochat_tui.jax_engine.model import GPT
    from nanochat_tui.jax_engine.optim import build_optimizer
    from nanochat_tui.jax_engine.step import make_train_step

    pre, logs = _task(base, prefs, **{"pref.reference": "precomputed"})
    written = list(prefs.parent.glob("prefs.ref-*.npz"))
    assert len(written) == 1 and any("written to" in m for m in logs)
    live, _ = _task(base, prefs, **{"pref.reference": "live"})
    assert live.ref_model is not None and pre.ref_model is None
    indices = list(range(8))
    for a, b in zip(pre.references(indices), live.references(indices), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6)
    np.testing.assert_allclose(pre.ref_val, live.ref_val, rtol=1e-6)

    config = live.config
    model = GPT(config.model, rngs=nnx.Rngs(0))
    restore_into(resolve_step_dir(base), model)
    bsz = config.train.device_batch_size
    loss_pre = pre.loss(model, *jax.tree.map(lambda a: a[0], pre.batch_of(indices[:bsz], 1, bsz)))
    loss_live = live.loss(
        model, *jax.tree.map(lambda a: a[0], live.batch_of(indices[:bsz], 1, bsz))
    )
    np.testing.assert_allclose(float(loss_pre[0]), float(loss_live[0]), rtol=1e-6)
    # the policy starts as the reference: every implicit reward is 0 and the loss is log 2
    np.testing.assert_allclose(float(loss_live[0]) / bsz, np.log(2), rtol=1e-5)

    reference = _params(live.ref_model)
    optimizer = nnx.Optimizer(model, build_optimizer(model, config), wrt=nnx.Param)
    step = make_train_step(model, optimizer, live.loss)
    batches = live.batches(None)
    first = np.asarray(batches.next()[1]["ref_chosen"])
    start = _params(model)
    for _ in range(3):
        out = step(model, optimizer, *batches.next(), 1.0)
    assert np.isfinite(float(out.loss))
    assert any(not np.array_equal(a, b) for a, b in zip(start, _params(model), strict=True))
    for a, b in zip(reference, _params(live.ref_model), strict=True):
        np.testing.assert_array_equal(a, b)  # the reference never moved
    again = live.batches(None).next()[1]["ref_chosen"]
    np.testing.assert_array_equal(first, np.asarray(again))
    # a second run reuses the precomputed file as it is
    before = written[0].read_bytes()
    _, logs = _task(base, prefs, **{"pref.reference": "precomputed"})
    assert any("reusing" in m for m in logs) and written[0].read_bytes() == before


def test_dpo_resumes_exactly_and_evaluates_held_out_pairs(base, prefs, tmp_path) -> None:
    extra = {"train.save_every": 2, "train.eval_every": 2}
    ref = Recorder()
    assert train(_config(base, prefs, **extra), tmp_path / "straight", ref).status == "finished"
    first_step = ref.of("step")[0]
    assert first_step["loss"] == pytest.approx(np.log(2), rel=1e-5)
    assert first_step["aux"]["rewards/margins"] == pytest.approx(0.0, abs=1e-5)
    assert {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "logps/chosen",
            "logps/rejected", "logits/chosen", "logits/rejected"} <= set(first_step["aux"])  # fmt: skip
    evaluation = ref.of("eval")[-1]
    assert evaluation["val_pairs"] == ref.of("run_start")[0]["val_pairs"] > 0
    assert 0.0 <= evaluation["eval_rewards/accuracies"] <= 1.0
    best, worst = evaluation["pairs"]["best"], evaluation["pairs"]["worst"]
    assert best[0]["margin"] >= worst[0]["margin"] and best[0]["chosen"].startswith("It is")

    control = ControlInbox()
    first = Recorder(stop_at=1, control=control)
    run_dir = tmp_path / "resumed"
    r1 = train(_config(base, prefs, **extra), run_dir, first, control)
    assert r1.status == "stopped" and r1.step == 2
    meta = rundir.latest_checkpoint(run_dir).meta
    assert meta["stage"] == "dpo" and set(meta["data_position"]) == {"epoch", "index"}
    second = Recorder()
    r2 = train(load_config(str(run_dir / "config.yaml")), run_dir, second, resume=True)
    assert r2.status == "finished" and r2.step == 4
    assert {**first.losses(), **second.losses()} == ref.losses()  # bit for bit
    assert second.of("eval")[-1]["eval_loss"] == evaluation["eval_loss"]


def test_dpo_refuses_without_a_reference_and_reads_only_jsonl(base, prefs, tmp_path) -> None:
    with pytest.raises(UserError, match=r"dpo needs a reference") as err:
        _task(base, prefs, **{"run.init_from": None})
    assert "orpo or simpo" in err.value.remediation
    with pytest.raises(UserError, match=r"reads preference pairs from a \.jsonl file"):
        _task(base, tmp_path)
    prefs.write_text(prefs.read_text() + '{"id": "x", "prompt": "q", "chosen": "a"}\n')
    with pytest.raises(UserError, match=r"prefs.jsonl, line 25: the row has no rejected answer"):
        _task(base, prefs)


def test_orpo_runs_without_a_reference(base, prefs, tmp_path) -> None:
    rec = Recorder()
    config = _config(base, prefs, **{"train.stage": "orpo", "train.num_iterations": 2})
    assert train(config, tmp_path / "orpo", rec).status == "finished"
    assert not list(prefs.parent.glob("prefs.ref-*.npz"))  # reference-free: nothing precomputed
    aux = rec.of("step")[-1]["aux"]
    assert {"nll_loss", "log_odds_ratio", "log_odds_chosen", "rewards/margins"} <= set(aux)
    assert rec.of("run_start")[0]["stage"] == "orpo" and "eval_nll_loss" in rec.of("eval")[-1]


def test_headless_run_prints_the_stage_headline_metrics(base, prefs, tmp_path, capsys) -> None:
    """`run` of a DPO stage ends with its held-out rewards (not a bpb it does not have), and
    the header names the stage with no `unigram bpb nan`."""
    from nanochat_tui.cli import main

    sets = tiny_overrides(
        {
            "train.stage": "dpo",
            "run.init_from": str(base),
            "data.source": str(prefs),
            "data.val_fraction": 0.2,
            "train.num_iterations": 2,
        }
    )
    args = ["run", "tiny", "--name", "dpo-cli", *(a for s in sets for a in ("--set", s))]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert not re.search(r"\bnan\b", out) and "dpo · " in out, out
    assert re.search(r"\d+ train / \d+ held-out pairs", out), out
    assert re.search(r"eval_rewards/accuracies \d\.\d{4} · eval_rewards/margins -?\d", out), out
    end = [e for e in _events(out) if e["type"] == "run_end"][-1]
    assert set(end["metrics"]) == {
        "eval_rewards/accuracies",
        "eval_rewards/margins",
        "val_loss",
    }


def _events(out: str) -> list[dict]:
    run_dir = Path(re.search(r"finished at step \d+: (\S+)", out).group(1))
    return [json.loads(line) for line in (run_dir / rundir.EVENTS).read_text().splitlines()]


def test_the_progress_display_prints_each_stage_header_and_eval() -> None:
    """The non-quiet display: a DPO eval line shows held-out rewards; SFT headers no `nan`."""
    from nanochat_tui.commands.train_cmd import eval_line

    dpo = {"type": "eval", "step": 4, "eval_rewards/accuracies": 0.75, "eval_rewards/margins": 0.5}
    assert eval_line(dpo) == "step 4: rewards/accuracies 0.7500 · rewards/margins 0.5000"
    pre = {"type": "eval", "step": 2, "val_bpb": 2.5, "unigram_bpb": 3.0, "val_loss": 1.7}
    assert eval_line(pre) == "step 2: val bpb 2.5000 · unigram 3.0000 · val loss 1.7000"
