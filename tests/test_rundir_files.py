"""The run directory's files on disk: events.jsonl after a torn last line (the writer starts a new
line, every reader skips the torn one and waits for a line still being written), and the modes of
files written atomically (0666 less the umask, like any new file; secrets 0600 whatever it is).

``os.umask`` is per process: each test sets it and puts it back (``umask`` below)."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from nanochat_tui import paths, rundir
from nanochat_tui.telemetry.jsonl import JsonlTailer, JsonlWriter, read_events


@contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def line(event: dict) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode() + b"\n"


COMPLETE = [
    {"type": "run_start", "time": 1.0, "stage": "sft", "num_iterations": 4},
    {"type": "step", "time": 2.0, "step": 1, "loss": 5.0, "tokens": 256},
    {"type": "step", "time": 3.0, "step": 2, "loss": 4.5, "tokens": 512},
]
# a crash (or a full disk) cut the last line: what was written of it stays, with no newline
TORN = line({"type": "step", "time": 4.0, "step": 3, "loss": 4.25, "tokens": 768})[:30]


def torn_log(run_dir: Path) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / rundir.CONFIG).write_text("name: tiny\n")
    path = run_dir / rundir.EVENTS
    path.write_bytes(b"".join(line(e) for e in COMPLETE) + TORN)
    return path


# ---------------------------------------------------------------- events.jsonl: the writer


def test_the_writer_starts_a_new_line_after_a_torn_last_line(tmp_path):
    """The engine's events go through the telemetry hub's JsonlWriter: a resume appending to a
    torn log must not glue its first event onto the cut line (that event would be lost)."""
    from nanochat_tui.telemetry.events import make_event
    from nanochat_tui.telemetry.hub import TelemetryHub

    path = torn_log(tmp_path)
    hub = TelemetryHub(tmp_path)
    resumed = make_event("run_start", resumed_from_step=2, num_iterations=6)
    hub.emit(resumed)
    hub.emit(make_event("step", step=3, loss=4.0))
    hub.close()
    events = read_events(path)
    assert events[:3] == COMPLETE
    assert events[3] == json.loads(json.dumps(resumed))  # intact, not lost in the torn line
    assert [e["type"] for e in events] == ["run_start", "step", "step", "run_start", "step"]
    assert path.read_bytes().split(b"\n")[3] == TORN  # the cut line stays, on its own line


@pytest.mark.parametrize("before", [None, b"", line(COMPLETE[0])])
def test_the_writer_adds_no_blank_line_to_a_new_empty_or_whole_log(tmp_path, before):
    path = tmp_path / rundir.EVENTS
    if before is not None:
        path.write_bytes(before)
    writer = JsonlWriter(path)
    writer({"type": "log", "time": 5.0, "message": "hi"})
    writer.close()
    data = path.read_bytes()
    assert data == (before or b"") + line({"type": "log", "time": 5.0, "message": "hi"})


# ---------------------------------------------------------------- events.jsonl: the readers


def test_the_tailer_skips_a_torn_line_and_waits_for_a_line_being_written(tmp_path):
    path = torn_log(tmp_path)
    tailer = JsonlTailer(path)
    assert tailer.read_new() == COMPLETE
    writer = JsonlWriter(path)  # a resume: the torn line is ended, then skipped
    writer.close()
    assert tailer.read_new() == []
    end = line({"type": "run_end", "time": 9.0, "step": 2, "status": "finished"})
    with path.open("ab") as fh:  # the writer mid-line: a whole JSON object, no newline yet
        fh.write(end[:-1])
        fh.flush()
        assert tailer.read_new() == []
        assert read_events(path) == COMPLETE
        fh.write(end[-1:])
    assert tailer.read_new() == [json.loads(end)]


def _finishing(run_dir: Path) -> bytes:
    """A log with a torn line (ended by a resume's writer) and a run_end line being written (no
    newline yet); returns the whole run_end line."""
    path = torn_log(run_dir)
    end = line(
        {"type": "run_end", "time": 9.0, "step": 2, "status": "finished", "final_val_bpb": 1.5}
    )
    with path.open("ab") as fh:
        fh.write(b"\n" + end[:-1])
    return end


def test_runs_compare_mcp_and_lineage_skip_torn_lines_and_wait_for_a_partial_one():
    from nanochat_tui.mcp.tools import run_status
    from nanochat_tui.orchestrator.compare import load_series
    from nanochat_tui.orchestrator.lineage import read_node
    from nanochat_tui.orchestrator.records import update_record
    from nanochat_tui.orchestrator.summaries import summarize

    run_dir = paths.runs_dir() / "torn"
    end = _finishing(run_dir)
    update_record(run_dir, name="torn", status="running", mode="detached")  # its pid is gone

    summary = summarize(run_dir)  # `runs` and the Runs pane
    assert summary.step == 2 and summary.status == "failed" and summary.detail == "crashed"
    status = run_status("torn")  # MCP
    assert [s["step"] for s in status["recent_steps"]] == [1, 2]
    assert status["num_iterations"] == 4 and status["val_bpb"] is None
    series = load_series(run_dir)  # compare
    assert [p[0] for p in series.points["loss"]] == [1, 2]
    assert "final_val_bpb" not in series.points
    assert read_node(run_dir).stage == "sft"  # lineage

    with (run_dir / rundir.EVENTS).open("ab") as fh:
        fh.write(end[-1:])  # the run_end line is complete now
    assert summarize(run_dir).status == "finished"
    assert run_status("torn")["val_bpb"] == 1.5


def test_a_line_that_is_not_an_event_object_is_skipped():
    """A hand-edited log: a JSON number, list, string or null is not an event (readers call
    .get on events), so every reader skips it."""
    from nanochat_tui.mcp.tools import run_status
    from nanochat_tui.orchestrator.summaries import summarize

    run_dir = paths.runs_dir() / "edited"
    run_dir.mkdir(parents=True)
    path = run_dir / rundir.EVENTS
    path.write_bytes(b'5\n["run_end"]\n"run_start"\nnull\n' + b"".join(map(line, COMPLETE)))
    assert read_events(path) == COMPLETE
    assert summarize(run_dir).step == 2
    assert run_status("edited")["num_iterations"] == 4


def test_the_lineage_reader_waits_for_a_run_start_being_written(tmp_path):
    from nanochat_tui.orchestrator.lineage import read_node

    start = line(COMPLETE[0])
    (tmp_path / rundir.CONFIG).write_text("name: tiny\n")
    (tmp_path / rundir.EVENTS).write_bytes(start[:-1])
    assert read_node(tmp_path).stage is None
    (tmp_path / rundir.EVENTS).write_bytes(start)
    assert read_node(tmp_path).stage == "sft"


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.mark.anyio
async def test_live_and_the_event_log_skip_a_torn_line(tmp_path):
    """The Live pane and the event log panel tail a torn log: the complete events are shown, the
    torn line is skipped, the line being written waits for its newline."""
    from helpers import pilot_wait_for
    from nanochat_tui.tui.app import NanochatApp
    from nanochat_tui.tui.screens.live import LivePane
    from nanochat_tui.tui.widgets.eventlog import TAIL_INTERVAL_S, EventLog

    end = _finishing(tmp_path)
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("5")
        live = app.query_one(LivePane)
        live.show_run_dir(tmp_path)
        log = EventLog()
        await app.mount(log)
        log.follow(tmp_path)
        log.set_shown(True)
        await pilot_wait_for(pilot, lambda: live.store.step == 2, 30, "Live at step 2")
        await pilot_wait_for(pilot, lambda: log.lines_shown >= 1, 30, "the run start line")
        await pilot.pause(4 * TAIL_INTERVAL_S)  # several reads of the unfinished run_end line
        assert log.lines_shown == 1  # the run start (steps are not notable lines)
        assert live.store.counts.get("run_end", 0) == 0
        with (tmp_path / rundir.EVENTS).open("ab") as fh:
            fh.write(end[-1:])
        await pilot_wait_for(pilot, lambda: log.lines_shown >= 2, 30, "the run end line")
        await pilot_wait_for(pilot, lambda: live.store.counts.get("run_end") == 1, 30, "run_end")
        assert log.lines_shown == 2 and live.store.counts["step"] == 2


# ---------------------------------------------------------------- modes of atomic writes


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o077, 0o600), (0o027, 0o640)])
def test_atomic_writes_respect_the_umask(tmp_path, mask, expected):
    from safetensors.numpy import save_file

    tmp_path = tmp_path / "files"
    with umask(mask):
        rundir.write_atomic(tmp_path / "a.txt", "text")
        rundir.write_atomic(tmp_path / "b.bin", b"\x00bytes")
        with rundir.atomic_path(tmp_path / "c.bin") as tmp:
            tmp.write_bytes(b"by path")
        with rundir.atomic_path(tmp_path / "d.safetensors") as tmp:
            save_file({"w": np.zeros(2, np.float32)}, str(tmp))  # re-creates the file 0600
        (tmp_path / "a.txt").chmod(0o600)  # an existing file's mode is not kept: the umask's is
        rundir.write_atomic(tmp_path / "a.txt", "again")
        rundir.set_pinned(tmp_path, 3, True)
    for name in ("a.txt", "b.bin", "c.bin", "d.safetensors", rundir.PINS):
        assert mode(tmp_path / name) == expected, name
    assert (tmp_path / "a.txt").read_text() == "again"
    assert (tmp_path / "b.bin").read_bytes() == b"\x00bytes"
    names = ["a.txt", "b.bin", "c.bin", "d.safetensors", "pins.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == names  # no temporary file left


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077])
def test_secrets_stay_0600_whatever_the_umask(mask):
    from nanochat_tui import secrets

    with umask(mask):
        secrets.set_secret("wandb", "0123456789abcdef0123456789abcdef01234567")
    assert mode(secrets.secrets_file()) == 0o600
    with umask(mask), rundir.atomic_path(paths.config_dir() / "other", private=True) as tmp:
        tmp.write_text("x")
    assert mode(paths.config_dir() / "other") == 0o600


def test_a_failed_atomic_write_leaves_the_old_file_and_no_temp(tmp_path):
    tmp_path = tmp_path / "files"
    tmp_path.mkdir()
    target = tmp_path / "keep.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), rundir.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("disk full")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["keep.json"]


# ---------------------------------------------------------------- a real run, resumed and exported


def test_a_real_run_resumed_after_a_torn_log_and_exported_under_two_umasks(tmp_path, capsys):
    """The smallest real run under umask 022: its config.yaml, run.json and tokenizer.json are
    0644 and so is every file of ``export --format hf``. Its log is then cut mid-line (a crash),
    and ``run --resume`` under umask 077 keeps every complete event, starts its own on a new
    line, and rewrites config.yaml and run.json 0600; an hf export under 077 is 0600 throughout."""
    from helpers import tiny_overrides
    from nanochat_tui.cli import main
    from nanochat_tui.jax_engine.tokenizer import Tokenizer
    from nanochat_tui.mcp.tools import run_status
    from nanochat_tui.orchestrator.compare import load_series
    from nanochat_tui.orchestrator.summaries import summarize
    from nanochat_tui.telemetry.events import PHASES

    sets = [a for s in tiny_overrides({"train.num_iterations": 2}) for a in ("--set", s)]
    with umask(0o022):
        assert main(["run", "tiny", *sets, "--name", "modes", "--quiet"]) == 0
        run_dir = paths.runs_dir() / "modes"
        assert main(["export", str(run_dir), str(tmp_path / "hf022"), "--format", "hf"]) == 0
    own = (rundir.CONFIG, rundir.RUN_RECORD, rundir.TOKENIZER)
    assert {name: oct(mode(run_dir / name)) for name in own} == dict.fromkeys(own, "0o644")
    exported = sorted((tmp_path / "hf022").iterdir())
    assert len(exported) == 5 and {oct(mode(p)) for p in exported} == {"0o644"}

    path = run_dir / rundir.EVENTS
    data = path.read_bytes()
    cut = data.rstrip(b"\n").rfind(b"\n") + 1 + 20  # 20 bytes into the last line (run_end)
    path.write_bytes(data[:cut])
    before = read_events(path)
    assert before and before[-1]["type"] != "run_end"
    capsys.readouterr()
    with umask(0o077):
        resume = ["run", "--resume", str(run_dir), "--set", "train.num_iterations=3", "--quiet"]
        assert main(resume) == 0, capsys.readouterr()
        out = tmp_path / "hf077"
        assert main(["export", str(run_dir), str(out), "--format", "hf"]) == 0
        Tokenizer.load(run_dir / rundir.TOKENIZER).save(run_dir / "tokenizer-copy.json")

    events = read_events(path)
    assert events[: len(before)] == before  # every complete event is still there
    added = events[len(before) :]
    # the resume's first event follows the torn line, intact (the old writer glued it on there)
    lines = path.read_bytes().split(b"\n")
    assert lines[len(before)] == data[cut - 20 : cut]
    assert json.loads(lines[len(before) + 1]) == added[0]
    assert next(e["phase"] for e in added if e["type"] == "phase") == PHASES[0]
    assert [e["resumed_from_step"] for e in added if e["type"] == "run_start"] == [2]
    assert added[-1]["type"] == "run_end" and added[-1]["step"] == 3
    assert summarize(run_dir).status == "finished" and summarize(run_dir).step == 3
    assert run_status(str(run_dir))["recent_steps"][-1]["step"] == 3
    assert [p[0] for p in load_series(run_dir).points["loss"]] == [1, 2, 3]

    for name in (rundir.CONFIG, rundir.RUN_RECORD, "tokenizer-copy.json"):
        assert mode(run_dir / name) == 0o600, name
    assert {oct(mode(p)) for p in out.iterdir()} == {"0o600"}
