"""``nanochat-tui mcp`` through the MCP SDK's own in-memory client session: tool schemas, config
tools, readable errors, and a real detached tiny run started, watched, steered and chatted with."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from typing import Any

import anyio
import pytest
from mcp.shared.memory import create_connected_server_and_client_session

from helpers import tiny_overrides
from nanochat_tui import paths
from nanochat_tui.config import estimates as est
from nanochat_tui.config import load_config, to_yaml
from nanochat_tui.mcp.server import build_app

pytestmark = pytest.mark.anyio

TOOLS = {
    "list_prefabs",
    "show_config",
    "estimate",
    "start_run",
    "list_runs",
    "run_status",
    "list_checkpoints",
    "control_run",
    "chat",
}


@contextlib.asynccontextmanager
async def client():
    async with create_connected_server_and_client_session(build_app()) as session:
        yield session


async def call(session, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(tool, arguments)
    assert not result.isError, result.content[0].text
    return json.loads(result.content[0].text)


async def call_error(session, tool: str, **arguments: Any) -> str:
    result = await session.call_tool(tool, arguments)
    assert result.isError, result.content
    text = result.content[0].text
    assert "Traceback" not in text and 'File "' not in text
    return text


async def test_every_tool_is_listed_with_a_schema_and_description():
    async with client() as session:
        listed = {t.name: t for t in (await session.list_tools()).tools}
    assert set(listed) == TOOLS
    for tool in listed.values():
        assert tool.description and len(tool.description) > 30, tool.name
        assert tool.inputSchema["type"] == "object", tool.name
    assert listed["show_config"].inputSchema["required"] == ["prefab"]
    props = listed["control_run"].inputSchema["properties"]
    assert props["action"]["enum"] == ["checkpoint", "stop", "patch"]
    assert props["confirm"]["type"] == "boolean" and props["confirm"]["default"] is False
    for text in (listed["control_run"].description, props["changes"]["description"]):
        assert '["optim.lr_multiplier=0.5"' in text and "KEY=VALUE" in text, text
        assert "train.num_iterations" in text  # the patchable keys are named
    assert listed["control_run"].annotations.destructiveHint is True
    assert listed["list_runs"].annotations.readOnlyHint is True
    chat = listed["chat"].inputSchema
    assert chat["required"] == ["checkpoint"]
    assert chat["properties"]["max_tokens"]["minimum"] == 1
    assert set(listed["start_run"].inputSchema["properties"]) == {"prefab", "overrides", "name"}


async def test_prefabs_listed_with_origin_and_broken_ones_marked():
    user = paths.user_prefabs_dir()
    user.mkdir(parents=True, exist_ok=True)
    (user / "mine.yaml").write_text(to_yaml(load_config("tiny", ["model.depth=2"])))
    (user / "bad.yaml").write_text("model: [unclosed\n")
    async with client() as session:
        out = await call(session, "list_prefabs")
    by_name = {p["name"]: p for p in out["prefabs"]}
    assert by_name["tiny"]["origin"] == "bundled" and not by_name["tiny"]["broken"]
    assert by_name["mine"]["origin"] == "user" and not by_name["mine"]["broken"]
    assert by_name["bad"]["broken"] and "not valid YAML" in by_name["bad"]["error"]


async def test_show_config_and_estimate_match_the_loader_and_bad_input_is_one_message():
    overrides = ["model.depth=3", "train.num_iterations=50"]
    config = load_config("tiny", overrides)
    async with client() as session:
        shown = await call(session, "show_config", prefab="tiny", overrides=overrides)
        assert shown["yaml"] == to_yaml(config)
        estimate = await call(session, "estimate", prefab="tiny", overrides=overrides)
        assert estimate["params"] == est.num_params(config.model)
        assert estimate["total_tokens"] == 50 * config.train.total_batch_size
        assert {e["accelerator"] for e in estimate["estimates"]} == {h.name for h in est.hardware()}

        text = await call_error(session, "show_config", prefab="tiny", overrides=["model.dept=3"])
        assert "unknown key 'model.dept'" in text and "did you mean 'model.depth'" in text
        text = await call_error(session, "show_config", prefab="tiny", overrides=["model.depth=-1"])
        assert "model.depth" in text
        text = await call_error(session, "estimate", prefab="nope")
        assert "no prefab named 'nope'" in text
        text = await call_error(session, "run_status", run="ghost")
        assert "no run named 'ghost'" in text
        text = await call_error(session, "control_run", run="ghost", action="explode")
        assert "action" in text
        text = await call_error(session, "show_config")
        assert "prefab" in text


LAX_TRUE = ("yes", "true", "True", 1, "1", "on")  # what pydantic's lax bool reads as true


async def test_argument_errors_are_one_line_per_problem():
    async with client() as session:
        text = await call_error(
            session,
            "control_run",
            action="explode",
            changes="optim.lr_multiplier=0.5",
            confirm="yes",
        )
        lines = text.splitlines()
        assert len(lines) == 4, text
        assert lines[0] == "run: required"
        assert lines[1].startswith("action: should be 'checkpoint', 'stop' or 'patch'")
        assert lines[2].startswith("changes: should be a valid list")
        assert lines[2].endswith('e.g. ["optim.lr_multiplier=0.5"]')
        assert lines[3].startswith("confirm: should be true or false (a JSON boolean")
        for line in lines:
            assert "pydantic" not in line and "http" not in line and "validation error" not in line
        text = await call_error(session, "control_run", run="ghost", action="stop", confrim=True)
        assert text == "confrim: unknown argument; did you mean 'confirm'?"
        text = await call_error(session, "start_run", prefab="tiny", overides=["model.depth=2"])
        assert text == "overides: unknown argument; did you mean 'overrides'?"
        text = await call_error(session, "chat", checkpoint="x", max_tokens=0)
        assert text == "max_tokens: should be greater than or equal to 1, got 0"


async def _wait_status(session, run: str, predicate, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await call(session, "run_status", run=run)
        if predicate(status):
            return status
        await anyio.sleep(0.5)
    raise AssertionError(f"run_status never matched; last: {status}")


async def test_detached_run_started_watched_steered_and_chatted_with():
    overrides = tiny_overrides({"train.num_iterations": 100_000})
    pid = None
    try:
        async with client() as session:
            started = await call(
                session, "start_run", prefab="tiny", overrides=overrides, name="agent"
            )
            pid = started["pid"]
            assert started["run_dir"] == str(paths.runs_dir() / "agent")
            status = await _wait_status(
                session, "agent", lambda s: (s["step"] or 0) >= 2 and s["loss"], 240
            )
            assert status["status"] == "running" and status["mode"] == "detached"
            assert isinstance(status["loss"], float) and status["recent_steps"]
            runs = await call(session, "list_runs")
            assert [r["run"] for r in runs["runs"]] == ["agent"]

            for action, changes in (("stop", []), ("patch", ["optim.lr_multiplier=0.5"])):
                text = await call_error(
                    session, "control_run", run="agent", action=action, changes=changes
                )
                assert "refused" in text and "confirm=true" in text
            # a strict JSON true only: "yes", "true", 1 ... leave the run alone, whatever the action
            for action, changes in (
                ("stop", []),
                ("patch", ["optim.lr_multiplier=0.5"]),
                ("checkpoint", []),
            ):
                for lax in LAX_TRUE:
                    text = await call_error(
                        session,
                        "control_run",
                        run="agent",
                        action=action,
                        changes=changes,
                        confirm=lax,
                    )
                    assert text.startswith("confirm: should be true or false"), text
            assert (await call(session, "run_status", run="agent"))["status"] == "running"
            text = await call_error(
                session,
                "control_run",
                run="agent",
                action="patch",
                changes=["model.depth=2"],
                confirm=True,
            )
            assert "model.depth" in text
            await call(
                session,
                "control_run",
                run="agent",
                action="patch",
                changes=["optim.lr_multiplier=0.5"],
                confirm=True,
            )
            await _wait_status(session, "agent", lambda s: "last_patch" in s, 60)
            await call(session, "control_run", run="agent", action="checkpoint")
            status = await _wait_status(session, "agent", lambda s: s["latest_checkpoint"], 60)
            assert status["status"] == "running"  # no refused stop got through meanwhile
            checkpoints = await call(session, "list_checkpoints", run="agent")
            assert len(checkpoints["checkpoints"]) == 1  # nor a refused checkpoint
            await call(session, "control_run", run="agent", action="stop", confirm=True)
            final = await _wait_status(session, "agent", lambda s: s["status"] != "running", 120)
            assert final["status"] == "stopped"
            assert final["last_patch"]["ok"] is True

            ckpts = (await call(session, "list_checkpoints", run="agent"))["checkpoints"]
            assert ckpts and ckpts[-1]["step"] >= 2
            assert [c["damaged"] for c in ckpts] == [None] * len(ckpts)
            messages = [{"role": "user", "content": "hello"}]
            reply = await call(
                session,
                "chat",
                checkpoint="agent",
                messages=messages,
                max_tokens=8,
                temperature=0.0,
            )
            assert reply["step"] == ckpts[-1]["step"] and reply["completion_tokens"] >= 1
            text = await call_error(session, "chat", checkpoint="agent")
            assert "exactly one of messages or prompt" in text

        from nanochat_tui.jax_engine.inference import ChatModel

        reference = ChatModel.load(ckpts[-1]["path"])
        assert reply["text"] == "".join(reference.chat(messages, max_tokens=8, temperature=0.0))
    finally:
        if pid:  # never leave a training process behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


def test_cli_without_the_mcp_package_names_the_extra(monkeypatch, capsys):
    import sys

    from nanochat_tui.cli import main

    for name in [
        m for m in sys.modules if m == "mcp" or m.startswith(("mcp.", "nanochat_tui.mcp"))
    ]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mcp", None)  # what an install without the extra looks like
    assert main(["mcp"]) == 2
    err = capsys.readouterr().err
    assert "needs the mcp package" in err and "--extra mcp" in err and "Traceback" not in err


def test_run_status_of_a_long_log_reads_its_head_and_tail(monkeypatch):
    from nanochat_tui.mcp import tools

    run_dir = paths.runs_dir() / "long"
    run_dir.mkdir(parents=True)
    lines = [{"type": "run_start", "time": 1.0, "num_params": 123, "num_iterations": 5000}]
    for step in range(5000):
        lines.append({"type": "step", "time": 2.0, "step": step, "loss": 10.0 - step / 1000})
        if step % 1000 == 999:
            lines.append({"type": "eval", "time": 2.0, "step": step, "val_bpb": step / 1e4})
    text = "\n".join(json.dumps(line) for line in lines) + "\n"
    (run_dir / "events.jsonl").write_text(text + '{"type": "step", "step": 5000, "lo')
    monkeypatch.setattr(tools, "HEAD_BYTES", 200)
    monkeypatch.setattr(tools, "TAIL_BYTES", 3000)
    assert len(text) > 50 * 3200  # the windows really cut the file
    status = tools.run_status("long")
    assert status["num_params"] == 123 and status["num_iterations"] == 5000
    assert status["step"] == 4999 and status["loss"] == 10.0 - 4999 / 1000
    assert [s["step"] for s in status["recent_steps"]] == list(range(4990, 5000))
    assert status["val_bpb"] == 4999 / 1e4 and status["val_bpb_step"] == 4999


async def test_no_tool_returns_a_secret(monkeypatch):
    secret = "Zq8vN2kLm4Rt7Wx1Yb5Hc3Jd"
    monkeypatch.setenv("OTLP_API_KEY", secret)
    endpoint = f"https://user:{secret}@otel.example/v1"
    async with client() as session:
        shown = await call(
            session, "show_config", prefab="tiny", overrides=[f"telemetry.otel.endpoint={endpoint}"]
        )
        text = await call_error(session, "run_status", run=f"/nowhere/{secret}")
        bad = await call_error(session, "show_config", prefab="tiny", overrides=secret)
    assert "otel.example" in shown["yaml"] and secret not in shown["yaml"]
    assert "no run named" in text and secret not in text
    assert bad.startswith("overrides: should be a valid list") and secret not in bad


async def test_the_cli_speaks_mcp_over_stdio_with_nothing_else_on_stdout(tmp_path):
    import sys

    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "nanochat_tui.cli", "mcp"],
        env={**os.environ, "NANOCHAT_TUI_HOME": str(tmp_path)},
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        assert {t.name for t in (await session.list_tools()).tools} == TOOLS
        estimate = await call(session, "estimate", prefab="tiny")
        assert estimate["params"] == est.num_params(load_config("tiny").model)
