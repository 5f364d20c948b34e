"""Serve screen: start/stop an OpenAI-compatible server for a checkpoint and watch it live.

Opened from the command palette ("Serve a checkpoint"). The server is a child process
(``nanochat-tui serve``, serve/process.py) so decoding never blocks the UI; the screen polls its
``/stats`` once a second: requests/s, tokens/s, latency p50/p99, active slots. Closing the screen
keeps the server running (reopen it to watch or stop it); quitting the app stops it.
"""

from __future__ import annotations

import os
import socket
from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from nanochat_tui.serve.process import ServeProcess


def _fmt(value: float | None, unit: str = "", digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def stats_table(stats: dict) -> Table:
    """The server's numbers as a two-column table."""
    table = Table(box=None, show_header=False, pad_edge=False)
    table.add_column(style="dim", no_wrap=True)
    table.add_column(no_wrap=True)
    ms = lambda s: None if s is None else s * 1000  # noqa: E731
    rows = [
        ("requests/s", _fmt(stats.get("requests_per_s"), digits=2)),
        ("tokens/s", _fmt(stats.get("tokens_per_s"))),
        ("latency p50", _fmt(ms(stats.get("latency_p50_s")), " ms", 0)),
        ("latency p99", _fmt(ms(stats.get("latency_p99_s")), " ms", 0)),
        ("first token p50", _fmt(ms(stats.get("ttft_p50_s")), " ms", 0)),
        ("active slots", f"{stats.get('active_slots', 0)} / {stats.get('slots', 0)}"),
        ("queued", str(stats.get("queued", 0))),
        ("precompiled", f"{stats.get('shapes_compiled', 0)} / {stats.get('shapes', 0)} shapes"),
        (
            "total",
            f"{stats.get('requests_total', 0)} requests · {stats.get('tokens_total', 0)} tokens"
            f" · {stats.get('rejected_total', 0)} rejected (429)",
        ),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class ServeScreen(ModalScreen[None]):
    """Checkpoint + port + optional API-key variable, Start/Stop, and the live numbers."""

    DEFAULT_CSS = """
    ServeScreen { align: center middle; }
    ServeScreen > Vertical {
        width: 90; max-width: 100%; height: auto; max-height: 100%;
        border: round $accent; background: $surface; padding: 0 1;
    }
    ServeScreen Horizontal { height: auto; }
    ServeScreen Label { width: 14; padding: 0 1 0 0; color: $text-muted; }
    ServeScreen Input { width: 1fr; }
    ServeScreen #serve-port { width: 12; }
    ServeScreen #serve-status { margin: 1 0 0 0; }
    ServeScreen #serve-stats { margin: 1 0; }
    ServeScreen Button { margin-right: 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close (the server keeps running)", id="serve.close"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.server: ServeProcess | None = None

    def compose(self) -> ComposeResult:
        with Vertical() as box:
            box.border_title = "Serve — OpenAI-compatible API on 127.0.0.1 (esc closes)"
            with Horizontal():
                yield Label("checkpoint")
                yield Input(
                    placeholder="run directory or checkpoint step directory", id="serve-path"
                )
            with Horizontal():
                yield Label("port")
                yield Input("8000", id="serve-port", type="integer")
                yield Label("key env var")
                yield Input(placeholder="optional, e.g. NANOCHAT_API_KEY", id="serve-key-env")
            with Horizontal():
                yield Button("Start", id="serve-start", variant="primary", compact=True)
                yield Button("Stop", id="serve-stop", variant="error", compact=True, disabled=True)
            yield Static("stopped", id="serve-status", markup=False)
            yield Static("", id="serve-stats")

    def on_mount(self) -> None:
        checkpoint = getattr(getattr(self.app, "state", None), "checkpoint", None)
        if checkpoint is not None:
            self.query_one("#serve-path", Input).value = str(checkpoint.path)
        self.set_interval(1.0, self.refresh_stats)

    def on_unmount(self) -> None:
        if self.server is not None:
            self.server.stop()

    def action_close(self) -> None:
        self.app.pop_screen()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "serve-start":
            self.start()
        elif event.button.id == "serve-stop":
            self.stop()

    def _status(self, text: str) -> None:
        self.query_one("#serve-status", Static).update(text)

    def start(self) -> None:
        path = self.query_one("#serve-path", Input).value.strip()
        port_text = self.query_one("#serve-port", Input).value.strip()
        key_env = self.query_one("#serve-key-env", Input).value.strip() or None
        if not path:
            self._status("pick a checkpoint: a run directory or a step directory")
            return
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            self._status("port must be a number from 1 to 65535")
            return
        port = int(port_text)
        if not port_is_free(port):
            self._status(f"port {port} is in use on 127.0.0.1; choose another")
            return
        if key_env and not os.environ.get(key_env):
            self._status(f"environment variable {key_env} is empty; export it, or clear the field")
            return
        self.server = ServeProcess(path, port, api_key_env=key_env)
        self.server.start()
        self.query_one("#serve-start", Button).disabled = True
        self.query_one("#serve-stop", Button).disabled = False
        self._status(f"starting {path} on port {port} (loading and compiling) …")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.server = None
        self.query_one("#serve-start", Button).disabled = False
        self.query_one("#serve-stop", Button).disabled = True
        self._status("stopped")
        self.query_one("#serve-stats", Static).update("")

    def refresh_stats(self) -> None:
        server = self.server
        if server is None:
            return
        if not server.alive():
            error = server.last_lines() or "the server exited"
            self.stop()
            self._status(f"server exited:\n{error}")
            return
        self.run_worker(self._poll(server), exclusive=True, group="serve-poll")

    async def _poll(self, server: ServeProcess) -> None:
        import asyncio

        key = os.environ.get(server.api_key_env) if server.api_key_env else None
        stats = await asyncio.to_thread(server.stats, key)
        if stats is None or server is not self.server:
            return
        self._status(f"serving '{stats.get('model')}' at {server.base_url}")
        self.query_one("#serve-stats", Static).update(stats_table(stats))
