"""Synthetic data against our own ``serve`` (a tiny trained checkpoint on 127.0.0.1, real HTTP):
rows and datasets written, resumed after a kill without duplicates or losses, auth and model
errors stop the run with one message, the key never reaches a file or the output, and the
Generate screen (Pilot) runs a generation from the palette. One trained checkpoint and one
compiled server serve the whole module."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from helpers import pilot_wait_for
from nanochat_tui.align import synth_store as store
from nanochat_tui.align.chat import load_conversations
from nanochat_tui.align.endpoint import Endpoint
from nanochat_tui.align.synth import (
    SynthSettings,
    draw_principle,
    generate,
    load_prompts,
    soul_principles,
)
from nanochat_tui.serve.server import BackgroundServer, load_state
from nanochat_tui.tui.app import NanochatApp
from nanochat_tui.tui.screens.generate import GenerateScreen
from nanochat_tui.tui.screens.review import ReviewScreen
from synth_servers import make_project, train_tiny, write_prompts

KEY = "sk-synth-test-0123456789abcdef"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("synth-serve"))


@pytest.fixture(scope="module")
def served(run_dir):
    """One server for the module (one slot: few shapes to compile), requiring ``KEY``."""
    with BackgroundServer(load_state(run_dir, slots=1, api_key=KEY)) as srv:
        yield srv


def settings(n_prompts_file: Path, **kw) -> SynthSettings:
    base = dict(project="demo", prompts=n_prompts_file, max_tokens=6, temperature=0.0)
    return SynthSettings(**{**base, **kw})


def stats(srv) -> dict:
    url = srv.base_url.removesuffix("/v1") + "/stats"
    return httpx.get(url, headers={"Authorization": f"Bearer {KEY}"}).json()


def test_rows_and_datasets_are_written(served, tmp_path, _isolated_home):
    make_project(_isolated_home)
    prompts = write_prompts(tmp_path / "p.jsonl", 3)
    before = stats(served)["requests_total"]
    endpoint = Endpoint(served.base_url, "synthsrv", api_key=KEY)
    progress = generate(settings(prompts, concurrency=2, accept_all=True), endpoint)
    assert (progress.done, progress.skipped, progress.stopped) == (3, 0, None)
    assert stats(served)["requests_total"] - before == 9  # answer, critique, revision per row
    assert progress.tokens > 0

    paths = store.SetPaths("demo", "synth")
    trace = store.read_log(paths.trace)
    assert len(trace) == 3 and {r["status"] for r in trace} == {"ok"}
    want_prompts, _ = load_prompts(prompts)
    _, principles = soul_principles("demo")
    assert [p.title for p in principles] == ["Be brief", "Be kind"]
    for record in trace:
        turns = record["turns"]
        assert [t["role"] for t in turns] == ["user", "assistant"] * 3
        assert turns[1]["content"] == record["answer"]
        assert turns[3]["content"] == record["critique"]
        assert turns[5]["content"] == record["revision"]
        prompt = next(p for p in want_prompts if p.text == record["prompt"])
        principle = draw_principle(prompt.id, principles)
        assert record["principle"]["title"] == principle.title
        assert turns[2]["content"] == principle.critique  # the SOUL's own requests
        assert turns[4]["content"] == principle.revision
        assert record["soul_version"] == "v0001"

    prefs = [json.loads(line) for line in paths.pref.read_text().splitlines()]
    by_id = {r["id"]: r for r in trace}
    assert len(prefs) == 3
    for row in prefs:
        assert row["chosen"] == by_id[row["id"]]["revision"]
        assert row["rejected"] == by_id[row["id"]]["answer"]
        assert row["review"] == "accepted"
    # the SFT file is a chat dataset the SFT stage itself reads
    convs = load_conversations(paths.sft, served.state.tokenizer, 10_000)
    assert len(convs) == 3


def _trace_ok_ids(paths: store.SetPaths) -> list[str]:
    return [r["id"] for r in store.read_log(paths.trace) if r["status"] == "ok"]


def test_resume_after_kill_has_no_duplicates_and_loses_nothing(served, tmp_path, _isolated_home):
    make_project(_isolated_home)
    prompts = write_prompts(tmp_path / "p.jsonl", 8)
    cmd = [
        sys.executable, "-m", "nanochat_tui.cli", "synth", "demo", "--endpoint", served.base_url,
        "--model", "synthsrv", "--prompts", str(prompts), "--max-tokens", "6",
        "--temperature", "0", "--concurrency", "2", "--rpm", "240", "--api-key-env", "SYNTH_KEY",
    ]  # fmt: skip
    env = {**os.environ, "NANOCHAT_TUI_HOME": str(_isolated_home), "SYNTH_KEY": KEY}
    paths = store.SetPaths("demo", "synth")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(_trace_ok_ids(paths)) < 2:
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = paths.trace.read_bytes()
    first_ids = _trace_ok_ids(paths)
    assert 2 <= len(first_ids) < 8

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{len(first_ids)} already there" in done.stdout
    after = paths.trace.read_bytes()
    cut = before[: before.rfind(b"\n") + 1]  # a torn last line (if the kill hit one) is dropped
    assert after.startswith(cut)  # nothing written before the kill changed
    ids = _trace_ok_ids(paths)
    assert len(ids) == len(set(ids)) == 8
    assert set(first_ids) <= set(ids)


def test_wrong_key_and_unknown_model_stop_with_one_message(served, tmp_path, _isolated_home):
    make_project(_isolated_home)
    prompts = write_prompts(tmp_path / "p.jsonl", 4)
    problems = []
    wrong = Endpoint(served.base_url, "synthsrv", api_key="sk-wrong-key-000000")
    progress = generate(settings(prompts, concurrency=3), wrong, on_problem=problems.append)
    assert progress.done == 0 and "auth" in progress.stopped and "401" in progress.stopped
    assert [p.policy for p in problems] == ["stop"]  # one message, though 3 rows were in flight
    assert progress.requests <= 3  # stopped at once, no retries

    problems.clear()
    unknown = Endpoint(served.base_url, "no-such-model", api_key=KEY)
    progress = generate(settings(prompts, concurrency=1), unknown, on_problem=problems.append)
    assert "404" in progress.stopped and "model name" in progress.stopped
    assert [p.kind for p in problems] == ["model"]

    good = Endpoint(served.base_url, "synthsrv", api_key=KEY)
    progress = generate(settings(prompts, limit=2), good)
    assert progress.done == 2  # the stopped rows are retried on a rerun


def test_endpoint_down_retries_then_stops(tmp_path, _isolated_home):
    import socket

    make_project(_isolated_home)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    problems = []
    endpoint = Endpoint(f"http://127.0.0.1:{port}/v1", "m")
    progress = generate(
        settings(write_prompts(tmp_path / "p.jsonl", 2), concurrency=1, max_retries=2,
                 backoff_base=0.01),
        endpoint,
        on_problem=problems.append,
    )  # fmt: skip
    assert [p.policy for p in problems] == ["retry", "retry", "stop"]
    assert all(p.kind == "unreachable" for p in problems)
    assert "cannot reach" in progress.stopped and "gave up after 3 attempts" in progress.stopped


def test_cli_key_never_in_output_files_or_log(served, tmp_path, _isolated_home, capsys,
                                               memory_keyring, monkeypatch):  # fmt: skip
    from nanochat_tui import secrets
    from nanochat_tui.cli import main

    make_project(_isolated_home)
    prompts = write_prompts(tmp_path / "p.jsonl", 2)
    secrets.set_secret("local-serve", KEY)
    args = ["synth", "demo", "--endpoint", served.base_url, "--model", "synthsrv",
            "--prompts", str(prompts), "--max-tokens", "4", "--accept-all",
            "--temperature", "0"]  # fmt: skip  # greedy: a sampled reply may be empty (skipped)
    assert main([*args, "--key-name", "local-serve"]) == 0
    monkeypatch.setenv("SYNTH_TEST_KEY", "sk-wrong-but-secret-999")
    assert main([*args, "--api-key-env", "SYNTH_TEST_KEY", "--set-name", "other"]) == 1
    out = capsys.readouterr()
    assert "2 rows written" in out.out and "auth" in out.err
    assert KEY not in out.out + out.err and "sk-wrong-but-secret" not in out.out + out.err
    for path in _isolated_home.rglob("*"):
        if path.is_file():
            text = path.read_bytes()
            assert KEY.encode() not in text, path
            assert b"sk-wrong-but-secret" not in text, path


def test_cli_refuses_bad_input_with_one_message(tmp_path, _isolated_home, capsys, monkeypatch):
    from nanochat_tui.cli import main

    monkeypatch.delenv("NOPE_KEY", raising=False)
    base = ["synth", "demo", "--model", "m"]
    assert main(base) == 2
    assert "no project named 'demo'" in capsys.readouterr().err
    make_project(_isolated_home)
    assert main([*base, "--prompts", str(tmp_path / "missing.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([*base, "--api-key-env", "NOPE_KEY"]) == 2
    assert "NOPE_KEY" in capsys.readouterr().err
    assert main([*base, "--key-name", "absent"]) == 2
    assert "no API key stored under the name 'absent'" in capsys.readouterr().err
    assert main([*base, "--concurrency", "0"]) == 2
    assert "--concurrency must be at least 1" in capsys.readouterr().err
    assert main([*base, "--endpoint", "localhost:8000"]) == 2
    assert "not an http:// or https:// URL" in capsys.readouterr().err


# ---------------------------------------------------------------- the Generate screen (Pilot)


async def open_from_palette(pilot, words: str) -> None:
    await pilot.press("ctrl+p")
    await pilot.pause()
    await pilot.press(*words)
    await pilot.pause(0.3)
    await pilot.press("enter")
    await pilot.pause()


@pytest.mark.anyio
async def test_generate_screen_runs_against_serve(
    served, tmp_path, _isolated_home, screen_text, type_into, memory_keyring
):
    make_project(_isolated_home)
    prompts = write_prompts(tmp_path / "p.jsonl", 2)
    app = NanochatApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await open_from_palette(pilot, "generate")
        screen = app.screen
        assert isinstance(screen, GenerateScreen)
        assert screen.query_one("#gen-project").value == "demo"
        await type_into(pilot, "#gen-prompts", str(prompts))
        await type_into(pilot, "#gen-endpoint", served.base_url)
        await type_into(pilot, "#gen-model", "synthsrv")
        await type_into(pilot, "#gen-max-tokens", "6")
        await type_into(pilot, "#gen-key-name", "local")
        await type_into(pilot, "#gen-key", "sk-wrong-typed-key-7")
        await pilot.click("#gen-start")
        await pilot_wait_for(pilot, lambda: not screen.running, 120, "the auth failure")
        await pilot_wait_for(
            pilot, lambda: "run stopped" in screen_text(app), 30, "the auth failure on screen"
        )
        text = screen_text(app)
        assert "auth: HTTP 401" in text and "run stopped" in text
        assert screen.query_one("#gen-key").value == ""  # stored, then cleared
        assert "sk-wrong-typed-key-7" not in text

        from nanochat_tui import secrets

        secrets.set_secret("local", KEY)  # the right key, as `synth --key-name local` stores it
        await pilot.click("#gen-start")
        await pilot_wait_for(pilot, lambda: not screen.running, 240, "the generation")
        # the end status is set with running=False; on a loaded machine its repaint comes later
        await pilot_wait_for(
            pilot, lambda: "pending review" in screen_text(app), 30, "the end status on screen"
        )
        text = screen_text(app)
        assert "finished" in text and "2/2 rows" in text and "cost $0.0000" in text, text
        assert "2 rows pending review" in text
        assert len(store.review_rows(store.SetPaths("demo", "synth"))) == 2

        await pilot.click("#gen-review")
        await pilot.pause()
        assert isinstance(app.screen, ReviewScreen)
        await pilot.press("a")
        await pilot.pause()
        pref = store.SetPaths("demo", "synth").pref
        assert len(pref.read_text().splitlines()) == 1
    for path in _isolated_home.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
