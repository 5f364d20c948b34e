"""Snapshots of the config pane, auth pane and help screen at 80×24 and 160×48."""

from __future__ import annotations

import pytest

from nanochat_tui.tui.app import NanochatApp

SIZES = [(80, 24), (160, 48)]


def keys(*pressed: str):
    """A run_before that settles the app (off-thread status reads included), then presses keys."""

    async def run_before(pilot) -> None:
        await pilot.pause()
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()
        if pressed:
            await pilot.press(*pressed)
        await pilot.pause()

    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_config_pane(snap_compare, size) -> None:
    assert snap_compare(NanochatApp(prefab="tiny"), terminal_size=size, run_before=keys("1"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_config_pane_with_error_and_override(snap_compare, size) -> None:
    async def edit(pilot) -> None:
        from conftest import _type_into  # waits until the field is laid out, then types

        await keys()(pilot)
        await _type_into(pilot, "#f-model--depth", "4")
        await pilot.press("escape")
        await _type_into(pilot, "#f-model--head_dim", "5")
        await pilot.pause()

    assert snap_compare(NanochatApp(prefab="tiny"), terminal_size=size, run_before=edit)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_auth_pane(snap_compare, size) -> None:
    assert snap_compare(NanochatApp(prefab="tiny"), terminal_size=size, run_before=keys("6"))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help_screen(snap_compare, size) -> None:
    assert snap_compare(
        NanochatApp(prefab="tiny"), terminal_size=size, run_before=keys("question_mark")
    )
