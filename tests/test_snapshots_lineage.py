"""Snapshots of the Runs pane with a DPO run's lineage line and of its Lineage view (key g), at
80×24 and 160×48. The three runs are written with the runner's own record and event writers and
fixed times, so the pixels are stable."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from nanochat_tui import paths
from nanochat_tui.rundir import meta_path
from test_snapshots_live import RunsHost

SIZES = [(80, 24), (160, 48)]
STARTED = 1_700_000_000


def write_run(name: str, stage: str, index: int, parent: Path | None, dataset: dict) -> Path:
    """A finished run as the runner leaves it: config.yaml, run.json, events and a checkpoint."""
    from nanochat_tui.config import apply_overrides, load_prefab
    from nanochat_tui.config.loader import to_yaml
    from nanochat_tui.orchestrator.records import update_record
    from nanochat_tui.telemetry.events import make_event

    run_dir = paths.runs_dir() / name
    run_dir.mkdir(parents=True)
    steps = {"pretrain": 200, "sft": 150, "dpo": 60}[stage]
    init = None if parent is None else str(parent / "checkpoints" / str(parent_step(parent)))
    overrides = {"train.stage": stage, "run.init_from": init}
    if stage != "pretrain":
        overrides["align.soul_version"] = 3
    config = apply_overrides(load_prefab("tiny"), overrides)
    (run_dir / "config.yaml").write_text(to_yaml(config))
    started = STARTED + 3600 * index
    pipeline = {"name": "chat", "index": index, "of": 3, "stage": stage, "parent": init}
    update_record(
        run_dir, name=name, mode="thread", status="finished", started=started, host="snap",
        project="default", soul_version=config.align.soul_version, pipeline=pipeline,
    )  # fmt: skip
    start = {"stage": stage, "dataset": dataset}
    if init is not None:
        start["initialised_from"] = {"path": init, "step": parent_step(parent)}
    events = [
        make_event("run_start", **start) | {"time": started},
        make_event("step", step=steps, loss=2.0) | {"time": started + 1},
        make_event("run_end", step=steps, status="finished") | {"time": started + 2},
    ]
    (run_dir / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    meta = meta_path(run_dir / "checkpoints" / str(steps))
    meta.parent.mkdir(parents=True)
    meta.write_text(json.dumps({"step": steps, "stage": stage}))
    os.utime(run_dir, (started, started))
    return run_dir


def parent_step(parent: Path) -> int:
    return max(int(p.name) for p in (parent / "checkpoints").iterdir())


@pytest.fixture
def chain(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    base = write_run(
        "chat.1-base", "pretrain", 1, None,
        {"source": "embedded stdlib corpus", "rows": 9120, "hash": "3f2a9c0d11e4"},
    )  # fmt: skip
    sft = write_run(
        "chat.2-sft", "sft", 2, base,
        {"source": "the embedded chat set (SOUL default/3)", "rows": 1046, "hash": "a41b07c2e9d5"},
    )  # fmt: skip
    write_run(
        "chat.3-dpo", "dpo", 3, sft,
        {"source": "/data/ada/datasets/synth-pref.jsonl", "rows": 412, "hash": "c0ffee12ab34"},
    )  # fmt: skip
    yield
    monkeypatch.delenv("TZ")
    time.tzset()


async def _listed(pilot) -> None:
    pane = pilot.app.query_one("RunsPane")
    deadline = time.monotonic() + 10
    while len(pane.runs) < 3 and time.monotonic() < deadline:
        await pilot.pause(0.05)
    await pilot.pause()


async def _lineage_open(pilot) -> None:
    from nanochat_tui.tui.screens.lineage import LineageScreen

    await _listed(pilot)
    pilot.app.query_one("#runs-table").focus()
    await pilot.press("g")
    deadline = time.monotonic() + 10
    while not isinstance(pilot.app.screen, LineageScreen) and time.monotonic() < deadline:
        await pilot.pause(0.05)
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_runs_pane_lineage_line(snap_compare, chain, size):
    assert snap_compare(RunsHost(), terminal_size=size, run_before=_listed)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_lineage_view(snap_compare, chain, size):
    assert snap_compare(RunsHost(), terminal_size=size, run_before=_lineage_open)
