"""One-row status bar: active pane, run status, prefab/checkpoint, device, W&B key + mode."""

from __future__ import annotations

import os
from typing import Any

from rich.text import Text
from textual.widgets import Static


def run_status(run: Any) -> str:
    """'no run', or 'run <name> <status>' from a RunHandle (never raises)."""
    if run is None:
        return "no run"
    try:
        status = run.status()
        status = status.get("status", status) if isinstance(status, dict) else status
        status = getattr(status, "status", status)
    except Exception as err:  # a vanished run dir, a dead socket
        status = f"? ({type(err).__name__})"
    return f"run {getattr(run, 'name', '?')} {status}"


def device_text(device: dict[str, Any] | None) -> str:
    if not device:
        return "not initialised"
    count = device.get("count", 1)
    kind = device.get("device_kind") or device.get("platform", "?")
    return f"{count}× {kind}" if count and count > 1 else str(kind)


def wandb_text(backend: str | None, mode: str) -> str:
    where = {"keyring": "keyring", "file": "file", "env": "env", None: "none", "?": "…"}[backend]
    env_mode = os.environ.get("WANDB_MODE", "").lower()
    if env_mode in ("offline", "disabled", "dryrun"):
        mode = "offline"
    return f"{where}·{mode}"


class StatusBar(Static):
    """Reads app.state; the app calls ``refresh_status()`` on changes and once a second."""

    DEFAULT_CSS = """
    StatusBar { dock: bottom; height: 1; background: $panel; color: $text; padding: 0 0 0 1; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("", **kwargs)
        self.pane_title = ""
        self.wandb_backend: str | None = "?"  # "?" until the app has read it (off-thread)

    def refresh_status(self) -> None:
        state = getattr(self.app, "state", None)
        if state is None:
            return
        sep = (" │ ", "dim")
        prefab = state.prefab_name + (f" +{len(state.overrides)}" if state.overrides else "")
        ckpt: list = []
        if state.checkpoint is not None:  # shown only when loaded: 80 columns are precious
            name = f"{state.checkpoint.run_dir.name}@{state.checkpoint.step}"
            ckpt = [("ckpt ", "dim"), name, sep]
        text = Text.assemble(
            (f"{self.pane_title}", "bold"),
            sep,
            run_status(state.run),
            sep,
            prefab,
            sep,
            *ckpt,
            ("device: ", "dim"),
            device_text(state.device),
            sep,
            ("W&B ", "dim"),
            wandb_text(self.wandb_backend, state.config.telemetry.wandb.mode),
            no_wrap=True,
            overflow="ellipsis",
        )
        if text != getattr(self, "_last_text", None):  # once a second: repaint only on change
            self._last_text = text
            self.update(text, layout=False)  # one docked line: no layout pass
