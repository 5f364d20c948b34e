"""Snapshots of the Checkpoints pane (fabricated, fixed-date checkpoints) and the Chat pane (no
checkpoint; a static transcript view), at 80×24 and 160×48."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from textual.app import App, ComposeResult

from nanochat_tui import paths
from nanochat_tui.rundir import CheckpointInfo, read_meta
from nanochat_tui.tui.state import AppState
from screens_fixtures import FIXED, populate

SIZES = [(80, 24), (160, 48)]


class PaneHost(App):
    """One pane on an AppState built from the tiny prefab (no shell chrome: stable pixels).

    Focus as in the shell: the pane's ``initial_focus()``, never Textual's first focusable."""

    AUTO_FOCUS = ""

    def __init__(self, pane: str, checkpoint: CheckpointInfo | None = None, **options) -> None:
        super().__init__()
        self.state = AppState.from_prefab("tiny")
        self.state.checkpoint = checkpoint
        self.pane = pane
        self.options = options

    def compose(self) -> ComposeResult:
        if self.pane == "checkpoints":
            from nanochat_tui.tui.screens.checkpoints import CheckpointsPane

            pane = CheckpointsPane()
            pane.nanochat_base = self.options["nanochat_base"]
            yield pane
        else:
            from nanochat_tui.tui.screens.chat import ChatPane

            yield ChatPane()

    def on_mount(self) -> None:
        self.theme = "textual-dark"
        if "transcript" in self.options:
            self.query_one("ChatPane").show_transcript(self.options["transcript"])
        pane = self.screen.children[0]
        if self.focused is None and hasattr(pane, "initial_focus"):
            self.set_focus(pane.initial_focus())


@pytest.fixture
def fabricated(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOCHAT_BASE_DIR", str(tmp_path / "nanochat"))
    return populate(paths.runs_dir(), tmp_path / "nanochat")


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_checkpoints_pane(snap_compare, fabricated, tmp_path, size):
    app = PaneHost("checkpoints", nanochat_base=tmp_path / "nanochat")
    # highlight the incompatible d4 run so its reasons show
    assert snap_compare(app, press=["down", "down"], terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_checkpoints_pane_compatible_only(snap_compare, fabricated, tmp_path, size):
    app = PaneHost("checkpoints", nanochat_base=tmp_path / "nanochat")
    assert snap_compare(app, press=["f"], terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_chat_pane_without_checkpoint(snap_compare, size):
    assert snap_compare(PaneHost("chat"), terminal_size=size)


def write_transcript(run_dir: Path) -> Path:
    path = run_dir / "transcripts" / "20250115-093000-abcd.jsonl"
    path.parent.mkdir(parents=True)
    stats = {"prompt_tokens": 9, "completion_tokens": 24, "ttft_s": 0.031, "tokens_per_s": 212.5}
    lines = [
        {"role": "user", "content": "What does the os module do?", "time": FIXED, "mode": "chat"},
        {
            "role": "assistant",
            "content": "The os module provides a portable way of using operating system "
            "dependent functionality, such as reading or writing files.",
            "time": FIXED + 1,
            "stats": stats,
            "mode": "chat",
        },
        {"role": "user", "content": "And os.path?", "time": FIXED + 5, "mode": "chat"},
        {
            "role": "assistant",
            "content": "os.path implements useful functions on pathnames.",
            "time": FIXED + 6,
            "stats": dict(stats, completion_tokens=11),
            "mode": "chat",
        },
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_chat_pane_transcript_view(snap_compare, fabricated, size):
    step_dir = fabricated["fits"] / "checkpoints" / "200"
    info = CheckpointInfo(step_dir, 200, read_meta(step_dir) or {})
    app = PaneHost("chat", checkpoint=info, transcript=write_transcript(fabricated["fits"]))
    assert snap_compare(app, terminal_size=size)
