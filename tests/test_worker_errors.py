"""A background worker that raises (started with exit_on_error=False, so the cockpit survives)
shows one scrubbed error toast and a log line, instead of leaving its pane silently stale."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
from textual import work
from textual.app import App, ComposeResult
from textual.widget import Widget

from helpers import pilot_wait_for
from nanochat_tui.tui.worker_errors import ReportsWorkerErrors

TOKEN = "hf_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3"
TUI = Path(__file__).resolve().parent.parent / "src" / "nanochat_tui" / "tui"


def tui_sources() -> list[tuple[Path, str]]:
    """Every module of the TUI package with its source."""
    return [(p, p.read_text(encoding="utf-8")) for p in sorted(TUI.rglob("*.py"))]


class Loader(ReportsWorkerErrors, Widget):
    @work(thread=True, group="loader", exit_on_error=False)
    def load(self) -> None:
        raise ValueError(f"cannot read results.json (token {TOKEN})\nsecond line")


class Host(ReportsWorkerErrors, App[None]):
    def compose(self) -> ComposeResult:
        yield Loader()

    def fail_here(self) -> None:
        def boom() -> None:
            raise OSError("disk full")

        self.run_worker(boom, thread=True, name="Saving the prefab", exit_on_error=False)


def messages(app: App) -> list[str]:
    return [n.message for n in app._notifications if n.severity == "error"]


@pytest.mark.anyio
async def test_a_failing_worker_becomes_one_scrubbed_toast(caplog):
    app = Host()
    async with app.run_test() as pilot:
        app.query_one(Loader).load()
        await pilot_wait_for(pilot, lambda: messages(app), 10, "toast")
        (message,) = messages(app)
        assert message.startswith("loader failed: ValueError: cannot read results.json")
        assert TOKEN not in message and "***" in message and "second line" not in message
        app.fail_here()  # a worker the app owns (steer calls, hand-offs)
        await pilot_wait_for(pilot, lambda: len(messages(app)) == 2, 10, "second toast")
        assert messages(app)[1] == "Saving the prefab failed: OSError: disk full"
        assert app.is_running
    logged = [r.getMessage() for r in caplog.records if r.name == "nanochat_tui.tui"]
    assert any(m.startswith("loader failed") for m in logged)


def test_every_owner_of_a_quiet_worker_reports_its_errors():
    """Each TUI class that starts a worker with exit_on_error=False reports its failures."""
    owners = []
    for path, source in tui_sources():
        module = ".".join(path.relative_to(TUI.parent.parent).with_suffix("").parts)
        for node in ast.parse(source).body:
            segment = ast.get_source_segment(source, node) or ""
            if isinstance(node, ast.ClassDef) and "exit_on_error=False" in segment:
                owners.append(getattr(importlib.import_module(module), node.name))
    assert len(owners) >= 8, owners
    quiet = [c.__name__ for c in owners if not issubclass(c, ReportsWorkerErrors)]
    assert not quiet, f"these start quiet workers without ReportsWorkerErrors: {quiet}"


def test_quiet_workers_are_named_in_words():
    """Every exit_on_error=False worker in the TUI has a name its error toast can start with."""
    unnamed = []
    for path, source in tui_sources():
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, ast.Call):
                continue
            kw = {k.arg: k.value for k in node.keywords}
            quiet = kw.get("exit_on_error")
            if isinstance(quiet, ast.Constant) and quiet.value is False:
                name = kw.get("name")
                if not (isinstance(name, ast.Constant) and " " in str(name.value)):
                    unnamed.append(f"{path.name}:{node.lineno}")
    assert not unnamed, f"name these workers in words: {unnamed}"
