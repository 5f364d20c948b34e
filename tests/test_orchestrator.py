"""Orchestrator without training: run status from run.json + events + pid, run dirs, control socket."""

from __future__ import annotations

import argparse
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nanochat_tui.config import Config, ConfigError
from nanochat_tui.errors import UserError
from nanochat_tui.jax_engine.control import ControlInbox
from nanochat_tui.orchestrator import control
from nanochat_tui.orchestrator.detached import make_handler
from nanochat_tui.orchestrator.records import process_start_time, update_record
from nanochat_tui.orchestrator.runner import attach, resolve_run_dir
from nanochat_tui.orchestrator.summaries import events_digest, list_runs, summarize


def make_run(parent: Path, name: str, events: list[dict], **record) -> Path:
    run_dir = parent / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("name: tiny\n")
    with (run_dir / "events.jsonl").open("w") as fh:
        for i, ev in enumerate(events):
            fh.write(json.dumps({"time": 1000.0 + i, **ev}) + "\n")
    if record:
        update_record(run_dir, name=name, **record)
    return run_dir


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


STEPS = [{"type": "run_start"}, {"type": "step", "step": 1}, {"type": "step", "step": 2}]


def test_status_from_record_events_and_pid(tmp_path):
    me = {
        "pid": os.getpid(),
        "pid_started": process_start_time(os.getpid()),
        "host": os.uname().nodename,
    }
    make_run(
        tmp_path,
        "done",
        [*STEPS, {"type": "run_end", "step": 2, "status": "finished"}],
        mode="thread",
        **me,
    )
    make_run(tmp_path, "live", STEPS, mode="detached", status="running", **me)
    make_run(tmp_path, "crashed", STEPS, mode="detached", status="running", pid=dead_pid())
    make_run(
        tmp_path,
        "reused",
        STEPS,
        mode="detached",
        status="running",
        pid=os.getpid(),
        pid_started=1.0,
    )
    make_run(tmp_path, "bare", STEPS)  # written by train() alone: no run.json
    got = {s.name: s for s in list_runs(tmp_path)}
    assert (got["done"].status, got["done"].step, got["done"].mode) == ("finished", 2, "thread")
    assert got["live"].status == "running" and got["live"].step == 2
    assert (got["crashed"].status, got["crashed"].detail) == ("failed", "crashed")
    assert got["reused"].status == "failed"  # same pid number, different process
    assert (got["bare"].status, got["bare"].mode) == ("unknown", "unknown")


def test_resumed_run_after_run_end_counts_as_running(tmp_path):
    me = {"pid": os.getpid(), "pid_started": process_start_time(os.getpid())}
    events = [*STEPS, {"type": "run_end", "step": 2, "status": "stopped"}, {"type": "run_start"}]
    run_dir = make_run(tmp_path, "again", events, mode="detached", **me)
    assert summarize(run_dir).status == "running"
    # resumed, but the new process has not emitted run_start yet: started after the old run_end
    ended = [*STEPS, {"type": "run_end", "step": 2, "status": "stopped"}]
    starting = make_run(tmp_path, "starting", ended, mode="detached", started=time.time(), **me)
    assert summarize(starting).status == "running"
    stale = make_run(tmp_path, "stale", ended, mode="detached", started=999.0, **me)
    assert summarize(stale).status == "stopped"


def test_events_digest_is_incremental_and_matches_a_full_read(tmp_path, monkeypatch):
    path = tmp_path / "events.jsonl"
    lines = [json.dumps({"time": 1000.0 + i, "type": "step", "step": i}) for i in range(1, 50)]
    path.write_text("\n".join(lines) + "\n")
    first = events_digest(path)
    assert (first.step, first.end, first.first_time, first.last_time) == (49, None, 1001.0, 1049.0)
    reads: list[int] = []
    real_open = open

    def counting_open(file, mode="r", *args, **kwargs):
        if str(file) == str(path):
            reads.append(1)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    assert events_digest(path).step == 49 and not reads  # unchanged file: a stat, no read
    with real_open(path, "a") as fh:  # appended: a run_end, a heartbeat, then a torn line
        fh.write(json.dumps({"time": 2000.0, "type": "run_end", "step": 50, "status": "stopped"}))
        fh.write("\n" + json.dumps({"time": 2001.0, "type": "heartbeat"}) + "\n")
        fh.write('{"time": 2002.0, "type": "step", "st')
    got = events_digest(path)
    assert len(reads) == 1
    assert (got.step, got.end["status"], got.last_time) == (50, "stopped", 2001.0)
    with real_open(path, "a") as fh:  # the torn line completes; a resumed run starts again
        fh.write('ep": 51}\n' + json.dumps({"time": 2003.0, "type": "run_start"}) + "\n")
    got = events_digest(path)
    assert (got.step, got.end, got.first_time) == (51, None, 1001.0)
    path.write_text(lines[0] + "\n")  # replaced by a shorter file: read again from the start
    got = events_digest(path)
    assert (got.step, got.last_time) == (1, 1001.0)


def test_events_digest_of_a_huge_log_reads_only_its_tail(tmp_path):
    path = tmp_path / "events.jsonl"
    with path.open("w") as fh:
        fh.write(json.dumps({"time": 1.0, "type": "run_start"}) + "\n")
        for i in range(1, 20001):
            fh.write(
                json.dumps({"time": 1.0 + i, "type": "step", "step": i, "pad": "x" * 40}) + "\n"
            )
    got = events_digest(path, max_bytes=4096)
    assert got.step == 20000 and got.first_time is not None and got.first_time > 19000


def test_resolve_run_dir_names_and_refuses_non_empty(tmp_path):
    config = Config().model_copy(update={"name": "tiny"})
    config.run.runs_dir = str(tmp_path)
    named, run_dir = resolve_run_dir(config, "exp-1")
    assert run_dir == tmp_path / "exp-1" and named.run.name == "exp-1"
    (run_dir / "events.jsonl").write_text("")
    with pytest.raises(UserError, match="already exists"):
        resolve_run_dir(config, "exp-1")
    with pytest.raises(UserError, match="directory name"):
        resolve_run_dir(config, "../escape")
    auto, auto_dir = resolve_run_dir(config)
    assert auto.run.name.startswith("tiny-") and auto_dir.parent == tmp_path


def test_attach_finished_run_controls_raise(tmp_path):
    run_dir = make_run(
        tmp_path, "old", [*STEPS, {"type": "run_end", "step": 2, "status": "finished"}],
        mode="detached", pid=dead_pid(), status="finished",
    )  # fmt: skip
    handle = attach(run_dir)
    assert handle.status() == "finished" and not handle.is_alive()
    for action in (handle.checkpoint_now, handle.stop):
        with pytest.raises(UserError, match="run is not running"):
            action()
    with pytest.raises(UserError, match="not a run directory"):
        attach(tmp_path / "nowhere")


def test_control_socket_roundtrip_and_permissions(tmp_path):
    inbox = ControlInbox()
    path = control.socket_path_for(tmp_path)
    server = control.ControlServer(path, make_handler(inbox, Config(), tmp_path)).start()
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert control.request(path, {"cmd": "ping"})["ok"]
        assert control.request(path, {"cmd": "checkpoint"}) == {"ok": True}
        bad = control.request(path, {"cmd": "patch", "changes": {"model.depth": 3}})
        assert not bad["ok"] and "cannot change model.depth" in bad["error"]
        assert control.request(path, {"cmd": "patch", "changes": {"optim.lr_multiplier": 0.25}})[
            "ok"
        ]
        assert not control.request(path, {"cmd": "format-disk"})["ok"]
        assert inbox.drain() == [
            {"cmd": "checkpoint"},
            {"cmd": "patch", "changes": {"optim.lr_multiplier": 0.25}},
        ]
        with pytest.raises(UserError, match="already serving"):
            control.ControlServer(path, lambda r: {"ok": True}).start()
    finally:
        server.close()
    assert not path.exists()
    with pytest.raises(UserError, match="not running"):
        control.request(path, {"cmd": "ping"})


def test_long_run_dir_gets_short_private_socket(tmp_path):
    deep = tmp_path / ("x" * 60) / ("y" * 60)
    deep.mkdir(parents=True)
    path = control.socket_path_for(deep)
    assert len(str(path)) <= control.MAX_SOCKET_PATH and path.parent != deep
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path == control.socket_path_for(deep)  # stable, so clients find it
    server = control.ControlServer(path, lambda r: {"ok": True, "echo": r}).start()
    try:
        assert control.request(path, {"cmd": "ping"})["echo"] == {"cmd": "ping"}
    finally:
        server.close()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to act as another user")
def test_other_user_cannot_use_the_socket():
    import shutil
    import tempfile

    folder = Path(tempfile.mkdtemp(dir="/tmp"))  # pytest's tmp parents are 0700: not traversable
    folder.chmod(0o755)
    path = folder / "c.sock"
    server = control.ControlServer(path, lambda r: {"ok": True}).start()
    code = (
        "import os, socket, sys\n"
        "os.setgid(65534); os.setuid(65534)\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    sys.exit(7)\n"
        'try:\n    s.sendall(b\'{"cmd": "stop"}\\n\'); data = s.recv(100)\n'
        "except OSError:\n    data = b''\n"
        "sys.exit(0 if data else 9)\n"
    )

    def as_nobody() -> int:
        return subprocess.run([sys.executable, "-c", code, str(path)], timeout=20).returncode

    try:
        assert as_nobody() == 7  # the 0600 mode stops it at connect()
        path.chmod(0o666)  # even if the mode were loosened, SO_PEERCRED refuses the stranger
        assert as_nobody() == 9
    finally:
        server.close()
        shutil.rmtree(folder)


def test_runs_and_control_cli(tmp_path, capsys):
    from nanochat_tui.commands import runs_cmd

    run_dir = make_run(
        tmp_path, "cli-run", [*STEPS, {"type": "run_end", "step": 2, "status": "stopped"}],
        mode="detached", pid=dead_pid(), started=time.time(),
    )  # fmt: skip
    assert runs_cmd.run(argparse.Namespace(command="runs", dir=tmp_path, json=False)) == 0
    out = capsys.readouterr().out
    assert "NAME" in out and "cli-run" in out and "stopped" in out and "detached" in out
    with pytest.raises(UserError, match="not running"):
        runs_cmd.run(
            argparse.Namespace(command="control", run_dir=run_dir, action="stop", changes=[])
        )
    with pytest.raises(ConfigError, match="cannot change"):
        runs_cmd.run(
            argparse.Namespace(
                command="control", run_dir=run_dir, action="patch", changes=["model.depth=3"]
            )
        )


def test_control_status_before_the_first_step_says_no_step_yet(tmp_path, capsys):
    from nanochat_tui.commands import runs_cmd

    run_dir = make_run(
        tmp_path, "young", [{"type": "run_start"}], mode="detached", pid=os.getpid(),
        pid_started=process_start_time(os.getpid()), started=time.time(),
    )  # fmt: skip
    args = argparse.Namespace(command="control", run_dir=run_dir, action="status", changes=[])
    assert runs_cmd.run(args) == 0
    out = capsys.readouterr().out
    assert "None" not in out and "young: running, no step yet [detached]" in out
    with (run_dir / "events.jsonl").open("a") as fh:
        fh.write(json.dumps({"type": "step", "time": 2000.0, "step": 1200}) + "\n")
    runs_cmd.run(args)
    assert "running, at step 1,200 [detached]" in capsys.readouterr().out


def test_name_problem_explains_bad_and_taken_names(tmp_path):
    from nanochat_tui.orchestrator.runner import name_problem

    config = Config().model_copy(update={"name": "tiny"})
    config.run.runs_dir = str(tmp_path)
    assert name_problem(config, "fresh") is None
    assert "letters, digits" in name_problem(config, "../x")
    make_run(tmp_path, "taken", STEPS)
    assert "a run named 'taken' exists" in name_problem(config, "taken")
