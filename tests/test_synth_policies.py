"""Synthetic data against a scripted OpenAI-shaped server on 127.0.0.1 (real HTTP): 429 and 5xx
retried after ``Retry-After`` or backoff, malformed replies and broken prompt lines skipped with a
reason, requests/minute and tokens/minute limits obeyed (measured server-side), the key scrubbed
from everything, review decisions and the exported datasets."""

from __future__ import annotations

import asyncio
import itertools
import json

import pytest
from starlette.responses import JSONResponse, PlainTextResponse

from nanochat_tui.align import synth_store as store
from nanochat_tui.align.datasets import check_dataset
from nanochat_tui.align.endpoint import Endpoint
from nanochat_tui.align.ratelimit import TokenBucket, backoff_delay, parse_retry_after
from nanochat_tui.align.synth import SynthSettings, generate
from nanochat_tui.errors import UserError
from synth_servers import (
    Scripted,
    ThreadServer,
    completion,
    error,
    make_project,
    write_prompts,
)

KEY = "sk-policy-test-key-abcdef0123456789"


@pytest.fixture
def project(_isolated_home):
    return make_project(_isolated_home)


def run(server: ThreadServer, prompts, **kw):
    problems = []
    base = dict(project="demo", prompts=prompts, max_tokens=8, backoff_base=0.05)
    progress = generate(
        SynthSettings(**{**base, **kw}),
        Endpoint(server.base_url, "m", api_key=KEY),
        on_problem=problems.append,
    )
    return progress, problems


def test_429_and_503_are_retried_after_retry_after(project, tmp_path):
    def script(n, body, headers):
        if n == 0:
            return error(429, "slow down", retry_after="1")
        if n == 2:
            return error(503, "overloaded", retry_after="0.5")
        if n == 4:
            return error(500, "boom")  # no Retry-After: exponential backoff
        return None

    scripted = Scripted(script)
    with ThreadServer(scripted.app) as server:
        progress, problems = run(server, write_prompts(tmp_path / "p.jsonl", 1), concurrency=1)
    assert progress.done == 1 and progress.skipped == 0
    assert [(p.kind, p.status, p.policy) for p in problems] == [
        ("rate_limited", 429, "retry"),
        ("server", 503, "retry"),
        ("server", 500, "retry"),
    ]
    assert [p.delay for p in problems[:2]] == [1.0, 0.5]
    times = scripted.times()
    assert len(times) == 6  # 3 failures + answer, critique, revision
    assert times[1] - times[0] >= 1.0 - 0.01
    assert times[3] - times[2] >= 0.5 - 0.01
    assert "retrying in 1.0 s" in problems[0].describe()


def test_persistent_5xx_skips_the_row_and_a_rerun_retries_it(project, tmp_path):
    broken = {"on": True}
    scripted = Scripted(lambda n, b, h: error(502, "bad gateway") if broken["on"] else None)
    prompts = write_prompts(tmp_path / "p.jsonl", 2)
    with ThreadServer(scripted.app) as server:
        progress, problems = run(server, prompts, concurrency=1, max_retries=1)
        assert (progress.done, progress.skipped, progress.stopped) == (0, 2, None)
        assert [p.policy for p in problems] == ["retry", "skip"] * 2
        assert "gave up after 2 attempts" in problems[1].message
        records = store.read_log(store.SetPaths("demo", "synth").trace)
        assert [r["status"] for r in records] == ["skipped", "skipped"]
        assert "row skipped" in records[0]["reason"]
        broken["on"] = False
        progress, _ = run(server, prompts)
    assert (progress.already, progress.done) == (0, 2)
    latest = store.latest(store.read_log(store.SetPaths("demo", "synth").trace))
    assert [r["status"] for r in latest.values()] == ["ok", "ok"]


def test_malformed_replies_are_skipped_with_a_reason(project, tmp_path):
    def script(n, body, headers):
        if body["messages"][0]["content"].endswith("0."):
            return JSONResponse({"choices": []})
        if body["messages"][0]["content"].endswith("1."):
            return PlainTextResponse("<html>oops</html>")
        return None

    with ThreadServer(Scripted(script).app) as server:
        progress, problems = run(server, write_prompts(tmp_path / "p.jsonl", 3), concurrency=1)
    assert (progress.done, progress.skipped) == (1, 2)
    assert {p.kind for p in problems} == {"malformed"}
    assert all(p.policy == "skip" for p in problems)
    messages = sorted(p.message for p in problems)
    assert messages == ["malformed reply: not JSON", "malformed reply: the reply has no choices"]


def test_broken_prompt_lines_are_skipped_and_named(project, tmp_path):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text(
        '{"prompt": "good one"}\n{not json\n{"id": "x"}\n\n{"id": 7, "prompt": "second"}\n'
        '{"id": 7, "prompt": "dup id"}\n'
    )
    with ThreadServer(Scripted().app) as server:
        progress, problems = run(server, prompts)
        (tmp_path / "bad.jsonl").write_text("nope\n")
        with pytest.raises(UserError, match="no usable prompts"):
            run(server, tmp_path / "bad.jsonl")
    assert progress.done == 2 and progress.skipped_prompt_lines == 3
    lines = [p.message for p in problems]
    assert lines[0].startswith("p.jsonl line 2: not JSON") and lines[0].endswith("line skipped")
    assert lines[1].startswith('p.jsonl line 3: no "prompt"')
    assert "line 6: id '7' already used" in lines[2]


def test_requests_per_minute_is_obeyed(project, tmp_path):
    scripted = Scripted()
    with ThreadServer(scripted.app) as server:
        progress, _ = run(server, write_prompts(tmp_path / "p.jsonl", 3), concurrency=3, rpm=300)
    assert progress.done == 3
    times = scripted.times()  # arrival times at the server: 50 ms of slack for the network
    assert len(times) == 9
    for i, j in itertools.combinations(range(9), 2):  # sent at least 60 / 300 s apart
        assert times[j] - times[i] >= (j - i) * 0.2 - 0.05, (i, j, times[j] - times[i])


def test_tokens_per_minute_is_obeyed(project, tmp_path):
    """Each reply reports 100 tokens; at 4200 tokens/min (70/s, a 700-token bucket) the requests
    started by time t used at most 700 + 70·t tokens, so the 9th waits ≥ (800 - 700) / 70 s."""
    scripted = Scripted(lambda n, b, h: JSONResponse(completion(f"r{n}", 90, 10)))
    with ThreadServer(scripted.app) as server:
        progress, _ = run(server, write_prompts(tmp_path / "p.jsonl", 3), concurrency=1, tpm=4200)
    assert progress.done == 3 and progress.tokens == 900
    times = scripted.times()
    for k, t in enumerate(times):  # 10 tokens of slack: server times lag admission a little
        assert 100 * k <= 700 + 70 * (t - times[0]) + 10, (k, t - times[0])
    assert times[-1] - times[0] >= (800 - 700) / 70 - 0.05


def test_key_is_scrubbed_even_when_the_server_echoes_it(project, tmp_path, _isolated_home):
    def script(n, body, headers):
        return error(401, f"bad key {headers['authorization']}")

    with ThreadServer(Scripted(script).app) as server:
        progress, problems = run(server, write_prompts(tmp_path / "p.jsonl", 1))
    assert "Bearer ***" in progress.stopped and KEY not in progress.stopped
    assert all(KEY not in p.describe() for p in problems)
    for path in _isolated_home.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_review_decisions_drive_the_exported_datasets(project, tmp_path):
    with ThreadServer(Scripted().app) as server:
        run(server, write_prompts(tmp_path / "p.jsonl", 3))
    paths = store.SetPaths("demo", "synth")
    rows = store.review_rows(paths)
    assert [r.review for r in rows] == ["pending"] * 3
    assert not paths.pref.exists()  # nothing accepted: nothing for training
    store.decide(paths, [rows[0].id], "accepted")
    store.decide(paths, [rows[1].id], "rejected")
    store.decide(paths, [rows[2].id], "edited", chosen="A better answer.")
    prefs = [json.loads(line) for line in paths.pref.read_text().splitlines()]
    assert [(p["id"], p["review"]) for p in prefs] == [
        (rows[0].id, "accepted"),
        (rows[2].id, "edited"),
    ]
    assert prefs[0]["chosen"] == rows[0].revision and prefs[0]["rejected"] == rows[0].answer
    assert prefs[1]["chosen"] == "A better answer."
    sft = [json.loads(line) for line in paths.sft.read_text().splitlines()]
    assert sft[1]["messages"][1]["content"] == "A better answer."
    # the project's own dataset checker (the Datasets view) reads both files as they are meant
    checked = check_dataset(paths.pref), check_dataset(paths.sft)
    assert [(r.preference_rows, r.chat_rows, r.issue_count) for r in checked] == [
        (2, 0, 0),
        (0, 2, 0),
    ]
    store.decide(paths, [rows[0].id], "rejected")  # the latest decision wins
    assert len(paths.pref.read_text().splitlines()) == 1
    with pytest.raises(UserError, match="cannot be empty"):
        store.decide(paths, [rows[1].id], "edited", chosen="  ")


def test_torn_last_line_is_cut_before_appending(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b", "half')
    assert [r["id"] for r in store.read_log(path)] == ["a"]
    with store.AppendLog(path) as log:
        log.append({"id": "c"})
    assert path.read_text() == '{"id": "a"}\n{"id": "c"}\n'
    path.write_text('{"id": "a"}\ngarbage\n{"id": "c"}\n')
    with pytest.raises(UserError, match="line 2"):
        store.read_log(path)


def test_a_second_writer_is_refused(project):
    paths = store.SetPaths("demo", "synth")
    with (
        store.writer_lock(paths),
        pytest.raises(UserError, match="another generation"),
        store.writer_lock(paths),
    ):
        pass


def test_token_bucket_and_backoff_math():
    now = [0.0]
    bucket = TokenBucket(rate=10.0, capacity=5.0, clock=lambda: now[0])
    assert bucket.wait_time(5) == 0
    asyncio.run(bucket.take(5))
    assert bucket.wait_time(1) == pytest.approx(0.1)
    now[0] += 0.3
    assert bucket.wait_time(3) == 0 and bucket.wait_time(4) == pytest.approx(0.1)
    bucket.settle(10)  # the reply used 10 more than estimated
    assert bucket.wait_time(1) == pytest.approx(0.8)
    assert backoff_delay(0, retry_after=3.0) == 3.0
    assert backoff_delay(10, retry_after=None, base=1, cap=60) == 60
    assert 1.5 <= backoff_delay(1, base=1) <= 2.5
    assert parse_retry_after("2") == 2.0 and parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_embedded_prompts_are_fixed_and_feed_a_run(project):
    from nanochat_tui.align.synth import embedded_prompts

    first, again = embedded_prompts(), embedded_prompts()
    assert first == again and len(first) > 500
    assert len({p.id for p in first}) == len(first)
    assert len({p.text.split("`")[1].split(".")[0] for p in first[:20] if "`" in p.text}) > 5
    with ThreadServer(Scripted().app) as server:
        progress, _ = run(server, None, limit=2)
    records = store.read_log(store.SetPaths("demo", "synth").trace)
    assert progress.done == 2
    assert sorted(r["prompt"] for r in records) == sorted(p.text for p in first[:2])


def test_ctrl_c_keeps_written_rows_and_a_rerun_finishes(project, tmp_path, _isolated_home):
    import os
    import signal
    import subprocess
    import sys
    import time

    prompts = write_prompts(tmp_path / "p.jsonl", 30)
    paths = store.SetPaths("demo", "synth")
    with ThreadServer(Scripted().app) as server:
        cmd = [sys.executable, "-m", "nanochat_tui.cli", "synth", "demo", "--model", "m",
               "--endpoint", server.base_url, "--prompts", str(prompts)]  # fmt: skip
        env = {**os.environ, "NANOCHAT_TUI_HOME": str(_isolated_home)}
        # 2 requests a second: the 30 rows take 15 s or more, so the interrupt lands mid-run even
        # when a loaded machine is slow to poll (at 10 a second, CI once saw the run finish first)
        slow = [*cmd, "--rpm", "120"]
        proc = subprocess.Popen(slow, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while len(store.read_log(paths.trace)) < 2:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err.decode()
        assert "interrupted: rows written so far are kept" in err.decode()
        kept = [r["id"] for r in store.read_log(paths.trace)]
        assert paths.trace.read_bytes().endswith(b"\n") and 2 <= len(kept) < 30
        done = subprocess.run(
            [*cmd, "--rpm", "6000"], env=env, capture_output=True, text=True, timeout=120
        )
    assert done.returncode == 0, done.stderr
    ids = [r["id"] for r in store.read_log(paths.trace)]
    assert ids[: len(kept)] == kept and len(ids) == len(set(ids)) == 30


def test_cli_temperature_reaches_every_request_and_a_bad_one_is_refused(project, tmp_path, capsys):
    from nanochat_tui.cli import main

    scripted = Scripted()
    prompts = write_prompts(tmp_path / "p.jsonl", 2)
    base = ["synth", "demo", "--model", "m", "--prompts", str(prompts), "--accept-all"]
    assert main([*base, "--temperature", "2.5"]) == 2
    assert "--temperature must be between 0 and 2, not 2.5" in capsys.readouterr().err
    with ThreadServer(scripted.app) as server:
        assert main([*base, "--endpoint", server.base_url, "--temperature", "1.3"]) == 0
    bodies = [body for _, body, _ in scripted.calls]
    assert len(bodies) == 6  # answer, critique, revision per prompt
    assert {body["temperature"] for body in bodies} == {1.3}
