"""Snapshots of the Evals pane (saved results of a base run and its SFT child) and of a chat
transcript with a calculator call, at 80×24 and 160×48."""

from __future__ import annotations

import json

import pytest
import yaml
from textual.app import App, ComposeResult

from nanochat_tui import paths
from nanochat_tui.tui.state import AppState

SIZES = [(80, 24), (160, 48)]


def saved_runs() -> None:
    from nanochat_tui.jax_engine.task_eval import save_result

    base = paths.runs_dir() / "chat.1-base"
    for name, init, stage, results in (
        ("chat.1-base", None, "pretrain", {100: 0.3, 200: 0.4}),
        ("chat.2-sft", str(base / "checkpoints" / "200"), "sft", {75: 0.5, 150: 0.6}),
    ):
        run_dir = paths.runs_dir() / name
        run_dir.mkdir(parents=True)
        (run_dir / "config.yaml").write_text(yaml.safe_dump({"run": {"init_from": init}}))
        (run_dir / "events.jsonl").write_text("")
        for step, acc in results.items():
            record = {"task": "stdlib-modules", "kind": "choice", "n": 30, "items": []}
            record |= {"correct": round(30 * acc), "accuracy": acc, "mean_gold_nll": 3.0 - acc}
            save_result(run_dir, record, step=step, stage=stage)


class Host(App):
    def __init__(self, pane: str, **options) -> None:
        super().__init__()
        self.state = AppState.from_prefab("tiny")
        self.pane, self.options = pane, options

    def compose(self) -> ComposeResult:
        if self.pane == "evals":
            from nanochat_tui.tui.screens.evals import EvalsPane

            yield EvalsPane()
        else:
            from nanochat_tui.tui.screens.chat import ChatPane

            yield ChatPane()

    def on_mount(self) -> None:
        self.theme = "textual-dark"
        if "transcript" in self.options:
            self.query_one("ChatPane").show_transcript(self.options["transcript"])


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_evals_pane(snap_compare, size):
    saved_runs()
    app = Host("evals")

    async def loaded(pilot):
        from helpers import pilot_wait_for

        pane = app.query_one("EvalsPane")
        await pilot_wait_for(pilot, lambda: pane.loads >= 1, 30, "results")

    assert snap_compare(app, run_before=loaded, terminal_size=size)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_chat_transcript_with_a_tool_call(snap_compare, tmp_path, size):
    path = tmp_path / "t.jsonl"
    parts = [["python", "417 * 23"], ["output", "9591"], ["text", "417 * 23 = 9591."]]
    records = [
        {"role": "user", "content": "What is 417 * 23?", "time": 0},
        {"role": "assistant", "content": "417 * 239591417 * 23 = 9591.", "parts": parts, "time": 1},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    assert snap_compare(Host("chat", transcript=path), terminal_size=size)
