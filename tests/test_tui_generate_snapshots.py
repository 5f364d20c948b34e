"""Snapshots of the Generate screen (idle form) and the Review screen (a fabricated set with one
row of each review status) at 80×24 and 160×48."""

from __future__ import annotations

import pytest
from textual.app import App

from nanochat_tui.align import synth_store as store
from synth_servers import make_project

SIZES = [(80, 24), (160, 48)]


class ScreenHost(App):
    """Pushes one screen on a bare app (no shell chrome: stable pixels)."""

    def __init__(self, which: str) -> None:
        super().__init__()
        self.which = which

    def on_mount(self) -> None:
        self.theme = "textual-dark"
        if self.which == "generate":
            from nanochat_tui.tui.screens.generate import GenerateScreen

            self.push_screen(GenerateScreen())
        else:
            from nanochat_tui.tui.screens.review import ReviewScreen

            self.push_screen(ReviewScreen())


@pytest.fixture
def fabricated(_isolated_home):
    make_project(_isolated_home)
    paths = store.SetPaths("demo", "synth")
    texts = [
        ("What does `json.dumps` do?", "It dumps.", "Too vague.", "It serializes to JSON."),
        ("Who are you?", "A program.", "Unkind and vague.", "I am nanochat, a small model."),
        ("What is 2 + 2?", "5", "Wrong.", "2 + 2 = 4."),
        ("Explain `re.sub`.", "Regex.", "Too short.", "It replaces regex matches in a string."),
    ]
    with store.AppendLog(paths.trace) as log:
        for i, (prompt, answer, critique, revision) in enumerate(texts):
            log.append(
                {
                    "id": f"row{i}",
                    "status": "ok",
                    "prompt": prompt,
                    "answer": answer,
                    "critique": critique,
                    "revision": revision,
                    "principle": {"title": ["Be brief", "Be kind"][i % 2]},
                }
            )
    store.decide(paths, ["row1"], "accepted")
    store.decide(paths, ["row2"], "rejected")
    store.decide(paths, ["row3"], "edited", "It substitutes matches of a pattern.")
    return paths


async def settle(pilot) -> None:
    await pilot.pause()
    for widget in pilot.app.screen.query("Input, TextArea"):
        widget.cursor_blink = False  # a blinking cursor would make the pixels flaky
    await pilot.pause()


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_generate_screen(snap_compare, _isolated_home, size) -> None:
    make_project(_isolated_home)
    assert snap_compare(ScreenHost("generate"), terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_review_screen(snap_compare, fabricated, size) -> None:
    assert snap_compare(ScreenHost("review"), terminal_size=size, run_before=settle)
