"""A failed run says why where the operator looks: `runs`, `control RUN status` and the Runs
pane show the reason of its last ``error`` event on one line (not only the event log)."""

from __future__ import annotations

import pytest

from helpers import pilot_wait_for as wait_for
from nanochat_tui import paths, rundir
from nanochat_tui.cli import main
from nanochat_tui.orchestrator.records import update_record
from nanochat_tui.orchestrator.summaries import list_runs
from nanochat_tui.telemetry.events import make_event
from nanochat_tui.telemetry.jsonl import JsonlWriter

REASON = "training diverged at step 72: loss 41.3 is over 3x its running mean"


def _failed_run(name: str, *, ended: bool = True) -> None:
    """A run dir as the engine leaves it when it fails: run_start, error, run_end (or, when the
    process died, no run_end and a dead pid in run.json)."""
    run_dir = paths.runs_dir() / name
    write = JsonlWriter(run_dir / rundir.EVENTS)
    write(make_event("run_start", run_name=name, stage="pretrain"))
    write(make_event("step", step=72, loss=41.3))
    write(
        make_event(
            "error",
            message=f"{REASON}\n  details on a second line",
            remediation="resume from step 70 with a lower lr",
            kind="diverged",
            step=72,
        )
    )
    if ended:
        write(make_event("run_end", step=72, status="failed", final_val_bpb=None))
    write.close()
    update_record(run_dir, name=name, mode="detached", pid=2**22 + 17, pid_started=1.0)


def test_runs_and_status_show_the_reason_of_a_failed_run(capsys) -> None:
    _failed_run("ended")
    _failed_run("crashed", ended=False)
    by_name = {s.name: s for s in list_runs()}
    assert by_name["ended"].status == "failed" and by_name["ended"].reason == REASON
    assert by_name["crashed"].detail == "crashed" and by_name["crashed"].reason == REASON
    assert main(["runs"]) == 0
    out = capsys.readouterr().out
    assert out.count(f"↳ {REASON}") == 2 and "second line" not in out
    assert main(["control", str(paths.runs_dir() / "ended"), "status"]) == 0
    assert capsys.readouterr().out.strip().endswith(f": {REASON}")


def test_a_resumed_run_forgets_the_earlier_failure() -> None:
    _failed_run("again")
    write = JsonlWriter(paths.runs_dir() / "again" / rundir.EVENTS)
    write(make_event("run_start", run_name="again", resumed_from_step=70))
    write(make_event("run_end", step=80, status="finished", final_val_bpb=2.0))
    write.close()
    (summary,) = list_runs()
    assert summary.status == "finished" and summary.reason == ""


@pytest.mark.anyio
async def test_the_runs_pane_shows_why_the_selected_run_failed(screen_text) -> None:
    from nanochat_tui.tui.app import NanochatApp

    _failed_run("broken")
    app = NanochatApp(prefab="tiny")
    async with app.run_test(size=(120, 30)) as pilot:
        await pilot.press("4")
        await wait_for(pilot, lambda: app.active_pane == "runs", 10, "runs pane")
        await wait_for(pilot, lambda: f"failed: {REASON}" in screen_text(app), 30, "reason line")
