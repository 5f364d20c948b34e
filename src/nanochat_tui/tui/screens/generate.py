"""Generate screen: SOUL-driven synthetic data (critique → revision) from an OpenAI-compatible
endpoint (its requests carry the form's max tokens and temperature), with progress, ETA, cost and every problem with its policy (docs/alignment.md).

Opened from the command palette ("Generate synthetic data"). Generation runs in a worker thread
(align/synth.py); its callbacks only store the latest numbers and problems, which a timer paints,
so a fast endpoint never floods the UI. Closing the screen keeps the generation running (reopen
it to watch or stop it). An API key typed here is stored in the keyring under the key name and
the field is cleared; it is never shown again.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, ProgressBar, RichLog, Static

from nanochat_tui.errors import UserError
from nanochat_tui.tui.worker_errors import ReportsWorkerErrors

POLICY_STYLE = {"retry": "yellow", "skip": "dark_orange", "stop": "bold red"}


def fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def progress_line(p) -> str:
    """done/total, skipped, tokens, cost and ETA of a ``synth.Progress`` (the worker may be
    updating it: the tokens are read once, so tokens and cost agree)."""
    tokens = p.tokens
    return (
        f"{p.finished}/{p.total} rows ({p.already} already there, {p.done} new, "
        f"{p.skipped} skipped) · {p.requests} requests · {tokens} tokens · "
        f"cost ${tokens / 1000 * p.price_per_1k:.4f} · ETA {fmt_eta(p.eta())}"
    )


class GenerateScreen(ReportsWorkerErrors, ModalScreen[None]):
    """Project, prompts, endpoint, model, key name and limits; Start/Stop; progress and problems."""

    DEFAULT_CSS = """
    GenerateScreen { align: center middle; }
    GenerateScreen > Vertical {
        width: 110; max-width: 100%; height: auto; max-height: 100%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    GenerateScreen Horizontal { height: auto; }
    GenerateScreen Label { width: 13; padding: 0 1 0 0; color: $text-muted; }
    GenerateScreen Input { width: 1fr; margin: 0 1 0 0; }
    GenerateScreen .num { width: 12; }
    GenerateScreen Button { margin-right: 2; }
    GenerateScreen #gen-status { margin: 1 0 0 0; }
    GenerateScreen #gen-problems { height: 8; border: round $panel; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close (generation keeps running)", id="generate.close"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.worker_stop: threading.Event | None = None
        self.running = False
        self.latest = None  # the newest synth.Progress, written by the worker
        self.pending_problems: list = []
        self.lock = threading.Lock()
        self.last_set: tuple[str, str] | None = None

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Generate synthetic data — critique → revision (esc closes)"
            with Horizontal():
                yield Label("project")
                yield Input(placeholder="project name", id="gen-project", compact=True)
                yield Label("set name")
                yield Input("synth", id="gen-set", compact=True)
            with Horizontal():
                yield Label("prompts")
                yield Input(
                    placeholder="JSONL file; blank: embedded stdlib prompts",
                    id="gen-prompts",
                    compact=True,
                )
                yield Label("temperature")
                yield Input("0.7", id="gen-temperature", type="number", classes="num", compact=True)
            with Horizontal():
                yield Label("endpoint")
                yield Input("http://127.0.0.1:8000/v1", id="gen-endpoint", compact=True)
                yield Label("model")
                yield Input(placeholder="model name", id="gen-model", compact=True)
            with Horizontal():
                yield Label("key name")
                yield Input(
                    placeholder="keyring name; blank: no key", id="gen-key-name", compact=True
                )
                yield Label("store key")
                yield Input(
                    placeholder="paste to store (hidden)", password=True, id="gen-key", compact=True
                )
            with Horizontal():
                yield Label("limit")
                yield Input(
                    placeholder="all", id="gen-limit", type="integer", classes="num", compact=True
                )
                yield Label("concurrency")
                yield Input("4", id="gen-concurrency", type="integer", classes="num", compact=True)
                yield Label("max tokens")
                yield Input("256", id="gen-max-tokens", type="integer", classes="num", compact=True)
            with Horizontal():
                yield Label("req/min")
                yield Input(
                    placeholder="no limit", id="gen-rpm", type="number", classes="num", compact=True
                )
                yield Label("tokens/min")
                yield Input(
                    placeholder="no limit", id="gen-tpm", type="number", classes="num", compact=True
                )
                yield Label("$ per 1k tok")
                yield Input("0", id="gen-price", type="number", classes="num", compact=True)
            with Horizontal():
                yield Button("Start", id="gen-start", variant="primary", compact=True)
                yield Button("Stop", id="gen-stop", variant="error", compact=True, disabled=True)
                yield Button("Review", id="gen-review", compact=True)
            yield Static("idle", id="gen-status", markup=False)
            yield ProgressBar(total=1, id="gen-bar", show_eta=False)  # determinate: no animation
            yield RichLog(id="gen-problems", max_lines=300, wrap=True, markup=False)

    def on_mount(self) -> None:
        self.query_one("#gen-project", Input).value = self.default_project()
        self.set_interval(0.25, self.paint)

    def default_project(self) -> str:
        """The config's ``align.project`` when it exists, else the first project, else the
        default one (created with a starter SOUL on first use)."""
        from nanochat_tui.projects import DEFAULT, list_projects

        found = list_projects()
        state = getattr(self.app, "state", None)
        align = getattr(getattr(state, "config", None), "align", None)
        configured = getattr(align, "project", None)
        if configured in found:
            return configured
        return found[0] if found else DEFAULT

    def on_unmount(self) -> None:
        if self.worker_stop is not None:  # the app is quitting: let the worker thread end
            self.worker_stop.set()

    def action_close(self) -> None:
        self.app.pop_screen()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "gen-start":
            self.start()
        elif event.button.id == "gen-stop":
            self.stop()
        elif event.button.id == "gen-review":
            self.app.action_review()

    def _status(self, text: str) -> None:
        self.query_one("#gen-status", Static).update(text)

    def _value(self, widget_id: str) -> str:
        return self.query_one(f"#{widget_id}", Input).value.strip()

    def _number(self, widget_id: str, name: str, cast=float):
        text = self._value(widget_id)
        if not text:
            return None
        try:
            return cast(text)
        except ValueError:
            raise UserError(f"{name} must be a number, not {text!r}") from None

    def settings(self):
        """The form as (SynthSettings, Endpoint); UserError for a bad field."""
        from nanochat_tui import secrets
        from nanochat_tui.align.endpoint import Endpoint
        from nanochat_tui.align.synth import SynthSettings

        project, model = self._value("gen-project"), self._value("gen-model")
        if not project:
            raise UserError("pick a project (its SOUL principles drive the critiques)")
        if not model:
            raise UserError("name the model the endpoint serves")
        key_name, key = self._value("gen-key-name"), self._value("gen-key")
        if key and not key_name:
            raise UserError("give a key name to store the key under")
        api_key = None
        if key_name:
            if key:
                stored = secrets.set_secret(key_name, key)
                self.query_one("#gen-key", Input).value = ""
                if stored.warning:
                    self.notify(stored.warning, severity="warning", timeout=10)
            api_key = secrets.get_secret(key_name)
            if not api_key:
                raise UserError(
                    f"no API key stored under {key_name!r}",
                    "paste it into 'store key' once, or clear the key name",
                )
        prompts = self._value("gen-prompts")
        temperature = self._number("gen-temperature", "temperature")
        if temperature is None:
            temperature = 0.7
        if not 0 <= temperature <= 2:
            raise UserError(
                f"temperature must be between 0 and 2, not {self._value('gen-temperature')}",
                "0 = always the most likely token; 0.7 is the usual setting",
            )
        settings = SynthSettings(
            project=project,
            set_name=self._value("gen-set") or "synth",
            prompts=Path(prompts).expanduser() if prompts else None,
            limit=self._number("gen-limit", "limit", int),
            concurrency=self._number("gen-concurrency", "concurrency", int) or 1,
            max_tokens=self._number("gen-max-tokens", "max tokens", int) or 256,
            rpm=self._number("gen-rpm", "requests/min"),
            tpm=self._number("gen-tpm", "tokens/min"),
            price_per_1k=self._number("gen-price", "price") or 0.0,
            temperature=temperature,
        )
        settings.validate()
        return settings, Endpoint(self._value("gen-endpoint"), model, api_key=api_key)

    def start(self) -> None:
        if self.running:
            return
        try:
            settings, endpoint = self.settings()
        except UserError as err:
            self._status(f"not started: {err}")
            return
        self.worker_stop = threading.Event()
        self.latest = None
        self.running = True
        self.last_set = (settings.project, settings.set_name)
        self.query_one("#gen-problems", RichLog).clear()
        self.query_one("#gen-start", Button).disabled = True
        self.query_one("#gen-stop", Button).disabled = False
        self._status("starting …")
        stop = self.worker_stop
        self.run_worker(
            lambda: self._generate(settings, endpoint, stop),
            thread=True,
            name="Generating data",
            group="synth",
            exit_on_error=False,
        )

    def stop(self) -> None:
        if self.worker_stop is not None:
            self.worker_stop.set()
            self._status("stopping: rows in flight are dropped, written rows are kept …")

    def _generate(self, settings, endpoint, stop: threading.Event) -> None:
        """Worker thread: run the generation, report the end on the UI thread."""
        from nanochat_tui.align.synth import Generator

        try:
            generator = Generator(
                settings,
                endpoint,
                on_progress=self._store_progress,
                on_problem=self._store_problem,
                stop=stop,
            )
            progress = generator.run()
        except UserError as err:
            self.app.call_from_thread(self._finished, None, str(err))
        except Exception as err:  # shown, never a crash of the app
            self.app.call_from_thread(self._finished, None, f"{type(err).__name__}: {err}")
        else:
            self.app.call_from_thread(self._finished, progress, None)

    def _store_progress(self, progress) -> None:
        with self.lock:
            self.latest = progress

    def _store_problem(self, problem) -> None:
        with self.lock:
            self.pending_problems.append(problem)

    def paint(self) -> None:
        with self.lock:
            progress, problems, self.pending_problems = self.latest, self.pending_problems, []
        log = self.query_one("#gen-problems", RichLog)
        for problem in problems:
            log.write(Text(problem.describe(), POLICY_STYLE.get(problem.policy, "")))
        if progress is not None and self.running:
            self.query_one("#gen-bar", ProgressBar).update(
                total=max(progress.total, 1), progress=progress.finished
            )
            self._status(progress_line(progress))

    def _finished(self, progress, error: str | None) -> None:
        self.paint()
        self.running = False
        self.query_one("#gen-start", Button).disabled = False
        self.query_one("#gen-stop", Button).disabled = True
        if error is not None:
            self._status(f"not started: {error}")
            return
        self.query_one("#gen-bar", ProgressBar).update(
            total=max(progress.total, 1), progress=progress.finished
        )
        from nanochat_tui.align.synth_store import SetPaths, review_rows

        rows = review_rows(SetPaths(*self.last_set))
        pending = sum(r.review == "pending" for r in rows)
        end = f"stopped: {progress.stopped}" if progress.stopped else "finished"
        self._status(
            f"{end} — {progress_line(progress)}\n"
            f"{pending} rows pending review: press Review to accept, reject or edit them"
        )
