"""The real CLI: bad --set values, a tiny `run` → `eval` → `chat`, and `--resume`."""

from __future__ import annotations

import re

import pytest

from nanochat_tui import rundir
from nanochat_tui.cli import main

SETS = [
    "model.depth=1",
    "model.sequence_len=64",
    "model.vocab_size=512",
    "data.max_chars=300000",
    "data.tokenizer_chars=100000",
    "train.device_batch_size=8",
    "train.total_batch_size=512",
    "train.num_iterations=40",
    "train.eval_every=0",
    "train.sample_every=0",
    "train.save_every=20",
    "train.eval_tokens=4096",
]


def _args(*sets: str) -> list[str]:
    return [a for s in sets for a in ("--set", s)]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.depth=x", "model.depth"),
        ("model.depht=2", "did you mean 'model.depth'"),
        ("train.device_batch_size=0", "greater than or equal to 1"),
        ("optim.matrix_lr=1000", "optim.matrix_lr"),
        ("nonsense", "not key=value"),
        ("train.total_batch_size=1000", "must be a multiple"),
    ],
)
def test_bad_set_values_are_rejected(override: str, message: str, capsys) -> None:
    assert main(["run", "tiny", "--set", override]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err


def test_unknown_prefab_and_missing_resume(capsys, tmp_path) -> None:
    assert main(["run", "tinyy"]) == 2
    assert "did you mean 'tiny'" in capsys.readouterr().err
    assert main(["run", "--resume", str(tmp_path / "nope")]) == 2
    assert "not a directory" in capsys.readouterr().err


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("NANOCHAT_TUI_HOME", str(tmp_path_factory.mktemp("home")))
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["run", "tiny", *_args(*SETS), "--name", "cli-tiny", "--quiet"])
    mp.undo()
    return code, out.getvalue()


def test_run_prints_run_dir_and_beats_unigram(cli_run) -> None:
    code, out = cli_run
    assert code == 0, out
    assert re.search(r"^run cli-tiny: .*cli-tiny$", out, re.M)
    assert "finished at step 40" in out
    m = re.search(r"val bpb ([\d.]+)\s+\(unigram baseline ([\d.]+)\)", out)
    assert m and float(m.group(1)) < float(m.group(2))


def _run_dir(out: str) -> str:
    return re.search(r"^run cli-tiny: (.*)$", out, re.M).group(1)


def test_eval_prints_bpb_and_samples(cli_run, capsys) -> None:
    run_dir = _run_dir(cli_run[1])
    assert main(["eval", run_dir, "--max-tokens", "8", "--prompts", "def ", "import "]) == 0
    out = capsys.readouterr().out
    val = float(re.search(r"^val bpb\s+([\d.]+)", out, re.M).group(1))
    uni = float(re.search(r"^unigram bpb\s+([\d.]+)", out, re.M).group(1))
    assert val < uni
    assert "--- 'def '" in out and "--- 'import '" in out


def test_chat_prompt_streams_and_repl_commands(cli_run, capsys, monkeypatch) -> None:
    run_dir = _run_dir(cli_run[1])
    assert main(["chat", run_dir, "--prompt", "hello", "--max-tokens", "6"]) == 0
    captured = capsys.readouterr()
    assert "tokens" in captured.err  # the stats line
    lines = iter(["hi", "/reset", "again", "/exit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    assert main(["chat", run_dir, "--max-tokens", "4"]) == 0
    captured = capsys.readouterr()
    assert captured.out.count("bot> ") == 2 and "conversation cleared" in captured.err


def test_resume_continues_to_more_steps(cli_run, capsys) -> None:
    run_dir = _run_dir(cli_run[1])
    assert main(["run", "--resume", run_dir, "--set", "train.num_iterations=44", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "resuming" in out and "finished at step 44" in out
    assert rundir.latest_checkpoint(run_dir).step == 44


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.softcap=inf", "finite"),  # issue 10: was accepted and written to config.yaml
        ("model.softcap=20", "different model (model.softcap)"),
        ("model.depth=2", "different model (model.depth)"),
    ],
)
def test_resume_refuses_model_changes_without_touching_the_run(
    cli_run, capsys, override, message
) -> None:
    from pathlib import Path

    run_dir = Path(_run_dir(cli_run[1]))
    before = {
        name: (run_dir / name).read_bytes()
        for name in (rundir.CONFIG, rundir.RUN_RECORD, rundir.EVENTS)
    }
    assert main(["run", "--resume", str(run_dir), "--set", override, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    for name, data in before.items():
        assert (run_dir / name).read_bytes() == data, f"{name} was rewritten"
