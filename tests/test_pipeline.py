"""Pipelines: a prefab's steps run in order as sibling runs, each from the previous step's last
checkpoint, with the lineage recorded; bad steps are refused before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import tiny
from nanochat_tui.errors import UserError


def prefab(tmp_path: Path, pipeline: list) -> Path:
    data: dict = {"name": "pipe", "run": {"runs_dir": str(tmp_path / "runs")}}
    for key, value in tiny({"train.num_iterations": 3}).items():
        section, field = key.split(".")
        data.setdefault(section, {})[field] = value
    data["pipeline"] = pipeline
    path = tmp_path / "pipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_cli_pipeline_pretrain_then_sft(tmp_path: Path, capsys):
    from nanochat_tui.cli import main
    from nanochat_tui.jax_engine.checkpoint import read_meta
    from nanochat_tui.orchestrator.runner import load_run_config

    path = prefab(
        tmp_path,
        [
            {"stage": "pretrain", "name": "base"},
            {"stage": "sft", "set": {"train.num_iterations": 2, "data.val_fraction": 0.05}},
        ],
    )
    assert main(["run", str(path), "--name", "p", "--quiet"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    base, sft = tmp_path / "runs" / "p.1-base", tmp_path / "runs" / "p.2-sft"
    assert "pipeline p: pretrain → sft" in out and "pipeline finished" in out
    base_ckpt = base / "checkpoints" / "3"
    assert read_meta(base_ckpt)["step"] == 3
    sft_config = load_run_config(sft)
    assert sft_config.train.stage == "sft" and sft_config.train.num_iterations == 2
    assert Path(sft_config.run.init_from) == base_ckpt  # lineage: the parent checkpoint
    assert not sft_config.pipeline
    record = json.loads((sft / "run.json").read_text())
    assert record["pipeline"] == {
        "name": "p", "index": 2, "of": 2, "stage": "sft", "parent": str(base_ckpt),
    }  # fmt: skip
    assert read_meta(sft / "checkpoints" / "2")["stage"] == "sft"
    assert (sft / "tokenizer.json").read_text() == (base / "tokenizer.json").read_text()
    # the lineage (Runs pane, runs --lineage): what each run trained on, recorded at its start
    import hashlib

    from nanochat_tui.jax_engine.corpus import corpus_fingerprint
    from nanochat_tui.orchestrator.lineage import resolve

    root, child = resolve(sft, tmp_path / "runs")
    assert (root.name, root.stage, child.stage, child.from_step) == (
        "p.1-base",
        "pretrain",
        "sft",
        3,
    )
    fingerprint = corpus_fingerprint(load_run_config(base).data).encode()
    assert root.dataset.source == "embedded stdlib corpus" and root.dataset.rows > 1
    assert root.dataset.hash == hashlib.sha256(fingerprint).hexdigest()[:12]
    assert child.dataset.source.startswith("the embedded chat set (SOUL default/1)")
    assert child.dataset.rows > 100 and len(child.dataset.hash) == 12


def test_bad_pipelines_refused_before_running(tmp_path: Path):
    from nanochat_tui.config import load_config
    from nanochat_tui.config.loader import ConfigError
    from nanochat_tui.orchestrator.pipeline import plan

    with pytest.raises(ConfigError, match="unknown stage 'rlhf'"):
        load_config(str(prefab(tmp_path, [{"stage": "rlhf"}])))
    config = load_config(str(prefab(tmp_path, [{"stage": "pretrain", "set": {"train.nope": 1}}])))
    with pytest.raises(UserError, match="pipeline step 1"):
        plan(config, "q")
    config = load_config(
        str(
            prefab(
                tmp_path, [{"stage": "pretrain"}, {"stage": "sft", "set": {"run.init_from": "x"}}]
            )
        )
    )
    with pytest.raises(UserError, match="starts from the previous step"):
        plan(config, "q")
    (tmp_path / "runs" / "q.1-pretrain").mkdir(parents=True)
    (tmp_path / "runs" / "q.1-pretrain" / "events.jsonl").write_text("")
    config = load_config(str(prefab(tmp_path, [{"stage": "pretrain"}])))
    with pytest.raises(UserError, match="already exists"):
        plan(config, "q")
    assert not (tmp_path / "runs" / "q.2-sft").exists()


# ---------------------------------------------------------------- pipelines are runs (issue 28.4)


def tiny_chat(tmp_path: Path, sft_iterations: int = 2) -> Path:
    """The bundled tiny-chat pipeline (pretrain → sft) made tiny: TINY overrides, 3 pretrain
    iterations, ``sft_iterations`` sft iterations, runs under ``tmp_path/runs``."""
    from nanochat_tui.config import apply_overrides, load_config, to_yaml

    config = apply_overrides(
        load_config("tiny-chat"),
        tiny({"train.num_iterations": 3, "run.runs_dir": str(tmp_path / "runs")}),
    )
    assert [s.stage for s in config.pipeline] == ["pretrain", "sft"]
    config.pipeline[1].set = {"data.val_fraction": 0.05, "train.num_iterations": sft_iterations}
    path = tmp_path / "tiny-chat.yaml"
    path.write_text(to_yaml(config))
    return path


def assert_finished(parent: Path, runs: Path, sft_iterations: int = 2, sft_runs: int = 1) -> None:
    """Both steps finished from their parent's weights; the parent says finished; its events
    hold both steps' runs in order."""
    from nanochat_tui.orchestrator.summaries import summarize
    from nanochat_tui.telemetry.jsonl import read_events

    base, sft = runs / f"{parent.name}.1-base", runs / f"{parent.name}.2-sft"
    assert summarize(base).status == "finished" and summarize(sft).status == "finished"
    assert (base / "checkpoints" / "3").is_dir()
    assert (sft / "checkpoints" / str(sft_iterations)).is_dir()
    summary = summarize(parent)
    assert (summary.status, summary.step) == ("finished", sft_iterations), summary
    starts = [e for e in read_events(parent / "events.jsonl") if e["type"] == "run_start"]
    assert [e.get("stage") for e in starts] == ["pretrain"] + ["sft"] * sft_runs
    record = json.loads((parent / "run.json").read_text())
    assert record["kind"] == "pipeline" and [s["name"] for s in record["steps"]] == [
        f"{parent.name}.1-base",
        f"{parent.name}.2-sft",
    ]


@pytest.mark.slow
def test_run_pipeline_detached_finishes_both_steps_in_the_background(tmp_path: Path, capsys):
    from nanochat_tui.cli import main
    from nanochat_tui.orchestrator.runner import DetachedRun

    path = tiny_chat(tmp_path)
    assert main(["run", str(path), "--name", "bg", "--detach"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    parent = tmp_path / "runs" / "bg"
    assert f"detached run bg: {parent}" in out
    handle = DetachedRun(parent)
    assert handle.wait(240), "the detached pipeline did not end"
    assert_finished(parent, tmp_path / "runs")
    assert main(["runs", "--dir", str(tmp_path / "runs")]) == 0
    table = capsys.readouterr().out
    row = next(line for line in table.splitlines() if line.startswith("bg "))
    assert " finished " in row and " detached " in row, table


@pytest.mark.slow
def test_pipeline_stopped_in_step_two_resumes_at_step_two(tmp_path: Path, capsys):
    """A thread-mode pipeline (what the TUI starts) stopped during sft says so, and
    ``run --resume PARENT`` continues sft from its checkpoint without re-running the base."""
    from nanochat_tui import rundir
    from nanochat_tui.cli import main
    from nanochat_tui.config import load_config
    from nanochat_tui.orchestrator.runner import start_run
    from nanochat_tui.orchestrator.summaries import summarize
    from nanochat_tui.telemetry.jsonl import read_events

    holder: dict = {}

    def stop_in_sft(event: dict) -> None:  # on the training thread: stop after sft's step 1
        if event["type"] == "run_start":
            holder["stage"] = event.get("stage")
        elif event["type"] == "step" and holder.get("stage") == "sft" and event["step"] == 1:
            holder["handle"].stop()

    config = load_config(str(tiny_chat(tmp_path, sft_iterations=4)))
    holder["handle"] = handle = start_run(config, name="p", callbacks=[stop_in_sft])
    assert handle.join(240) and handle.error is None, handle.error
    parent, runs = tmp_path / "runs" / "p", tmp_path / "runs"
    summary = summarize(parent)
    assert (summary.status, summary.detail) == ("stopped", "at step 2/2 sft"), summary
    sft = runs / "p.2-sft"
    stopped_at = rundir.latest_checkpoint(sft).step
    assert summarize(sft).status == "stopped" and 1 <= stopped_at < 4

    assert main(["run", "--resume", str(parent), "--quiet"]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "[2/2] sft" in out and "[1/2]" not in out, out
    assert_finished(parent, runs, sft_iterations=4, sft_runs=2)  # sft started, then resumed
    sft_starts = [e for e in read_events(sft / "events.jsonl") if e["type"] == "run_start"]
    assert [e.get("resumed_from_step") for e in sft_starts] == [None, stopped_at]
    base_starts = [e for e in read_events(runs / "p.1-base" / "events.jsonl")]
    assert sum(e["type"] == "run_start" for e in base_starts) == 1  # not run again
    assert main(["run", "--resume", str(parent)]) == 2
    assert "finished every step; nothing to resume" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.anyio
async def test_mcp_start_run_runs_a_pipeline_prefab(tmp_path: Path):
    """The MCP SDK's own client: start_run with a pipeline prefab starts the pipeline detached;
    run_status on the parent follows it to the end."""
    import time

    import anyio
    from mcp.shared.memory import create_connected_server_and_client_session

    from nanochat_tui.mcp.server import build_app

    path = tiny_chat(tmp_path)
    async with create_connected_server_and_client_session(build_app()) as session:

        async def call(tool: str, **arguments) -> dict:
            result = await session.call_tool(tool, arguments)
            assert not result.isError, result.content[0].text
            return json.loads(result.content[0].text)

        started = await call("start_run", prefab=str(path), overrides=[], name="agent")
        parent = tmp_path / "runs" / "agent"
        assert started["run_dir"] == str(parent) and started["steps"] == [
            "agent.1-base",
            "agent.2-sft",
        ]
        deadline = time.monotonic() + 240
        while (status := await call("run_status", run=str(parent)))["status"] != "finished":
            assert status["status"] == "running", status
            assert time.monotonic() < deadline, status
            await anyio.sleep(0.5)
    assert_finished(parent, tmp_path / "runs")


@pytest.mark.slow
@pytest.mark.anyio
async def test_tui_runs_pane_starts_a_pipeline_and_live_follows_its_steps(tmp_path: Path):
    """As a user: the tiny-chat prefab active, Runs pane, n, a name, enter: the pipeline runs
    both steps in the app's thread; Live follows the parent, so it ends on the sft step."""
    from helpers import pilot_wait_for, start_run_from_runs_pane
    from nanochat_tui.orchestrator.summaries import summarize
    from nanochat_tui.tui.app import NanochatApp
    from nanochat_tui.tui.screens.live import LivePane

    app = NanochatApp(prefab=str(tiny_chat(tmp_path)))
    parent = tmp_path / "runs" / "chat"
    async with app.run_test(size=(120, 40)) as pilot:
        await start_run_from_runs_pane(pilot, app, "chat")
        assert app.state.run.run_dir == parent
        await pilot_wait_for(
            pilot, lambda: summarize(parent).status == "finished", 240, "the pipeline finished"
        )
        live = app.query_one(LivePane)
        await pilot_wait_for(
            pilot, lambda: live.store.run_end.get("status") == "finished", 20, "live caught up"
        )
        assert live.store.run_start.get("stage") == "sft"
        assert live.store.first_step == 1 and live.store.get("loss").count == 2  # sft's steps
    assert_finished(parent, tmp_path / "runs")
