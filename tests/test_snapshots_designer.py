"""Snapshots of the Designer pane (a plugin pane) at 80×24 and 160×48: the nanochat-d4 template
with one edited block (SwiGLU, MQA) and the validation errors of a typed, unapplied edit."""

from __future__ import annotations

import pytest

from nanochat_tui.tui.app import NanochatApp

SIZES = [(80, 24), (160, 48)]


async def _designer(pilot) -> None:
    from helpers import pilot_wait_for
    from nanochat_tui.bundled.designer.pane import DesignerPane

    await pilot.pause()
    await pilot.app.workers.wait_for_complete()
    await pilot.press("D")
    await pilot_wait_for(pilot, lambda: pilot.app.active_pane == "designer", 20, "designer")
    pane = pilot.app.query_one(DesignerPane)
    await pilot.press("t", "down", "down", "e")
    for ch in "mlp=swiglu n_kv_head=1":
        await pilot.press({"=": "equals_sign", " ": "space"}.get(ch, ch))
    await pilot.press("enter", "up", "e")
    for ch in "n_head=3":  # previewed, not applied: the error shows
        await pilot.press({"=": "equals_sign"}.get(ch, ch))
    await pilot_wait_for(pilot, lambda: pane.preview is not None, 10, "preview")
    await pilot.press("escape")  # leave the line (its blinking cursor would make the image vary)
    pilot.app.clear_notifications()  # the template's toast: shown or expired by load, not by us
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_designer_pane(snap_compare, size) -> None:
    assert snap_compare(NanochatApp(prefab="tiny"), terminal_size=size, run_before=_designer)
