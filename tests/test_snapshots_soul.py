"""Snapshots of the SOUL pane and its Datasets view at 80×24 and 160×48 (fixed version times)."""

from __future__ import annotations

import json
import os

import pytest

from nanochat_tui import projects
from nanochat_tui.tui.app import NanochatApp

SIZES = [(80, 24), (160, 48)]
FIXED = 1_767_225_600  # 2026-01-01 00:00 UTC
WEATHER = {
    "tools": [
        {
            "name": "weather",
            "description": "Current weather for a city.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            "command": ["python3", "weather.py"],
        }
    ]
}


def _project() -> None:
    project = projects.open_project()
    text = project.read().soul_text
    project.save_soul(text, json.dumps(WEATHER))
    for v in project.versions():
        os.utime(project.soul_dir / projects.version_label(v), (FIXED, FIXED))
    chat = {"prompt": "What is 2 + 3?", "completion": "It is 5."}
    (project.datasets_dir / "chat.jsonl").write_text(json.dumps(chat) + "\n{oops\n")


def keys(*pressed: str):
    async def run_before(pilot) -> None:
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press(*pressed)
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_soul_pane(snap_compare, size) -> None:
    _project()
    assert snap_compare(NanochatApp(prefab="tiny"), terminal_size=size, run_before=keys("7"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_datasets_view(snap_compare, size) -> None:
    _project()
    assert snap_compare(
        NanochatApp(prefab="tiny"), terminal_size=size, run_before=keys("7", "escape", "t")
    )
