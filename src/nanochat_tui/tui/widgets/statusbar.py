"""One-row status bar: active pane, run status, prefab, the loaded checkpoint new runs start from,
device, W&B key + mode."""

from __future__ import annotations

import os
from typing import Any

from rich.text import Text
from textual.widgets import Static

from nanochat_tui.tui import init_from


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


def wandb_text(backend: str | None, mode: str, enabled: bool = True) -> str:
    """'off' when the config does not log to W&B; else where the key is · the logging mode."""
    if not enabled:
        return "off"
    where = {"keyring": "keyring", "file": "file", "env": "env", None: "none", "?": "…"}[backend]
    env_mode = os.environ.get("WANDB_MODE", "").lower()
    if env_mode in ("offline", "disabled", "dryrun"):
        mode = "offline"
    return f"{where}·{mode}"


def _fit(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(1, width - 1)] + "…"


class StatusBar(Static):
    """Reads app.state; the app calls ``refresh_status()`` on changes and once a second.

    Device and W&B state always show: when the row is too narrow (80 columns) the labels go,
    then the run and prefab names are shortened, never the right-hand fields."""

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
        wandb = state.config.telemetry.wandb
        run = run_status(state.run)
        prefab = state.prefab_name + (f" +{len(state.overrides)}" if state.overrides else "")
        ckpt = ""
        if state.checkpoint is not None:  # shown only when loaded: 80 columns are precious
            ckpt = init_from.label(state.checkpoint)
        device = device_text(state.device)
        wb = wandb_text(self.wandb_backend, wandb.mode, wandb.enabled)
        width = (self.size.width or 80) - 1
        long = self._assemble(run, prefab, ckpt, device, wb, labels=True)
        text = long
        if long.cell_len > width:
            short = self._assemble(run, prefab, ckpt, device, wb, labels=False)
            spare = width - short.cell_len
            if spare < 0:  # shorten the names, keep device and W&B whole
                names = max(8, (len(run) + len(prefab) + len(ckpt) + spare) // (3 if ckpt else 2))
                short = self._assemble(
                    _fit(run, names),
                    _fit(prefab, names),
                    _fit(ckpt, names),
                    device,
                    wb,
                    labels=False,
                )
            text = short
        if text != getattr(self, "_last_text", None):  # once a second: repaint only on change
            self._last_text = text
            self.update(text, layout=False)  # one docked line: no layout pass

    def _assemble(
        self, run: str, prefab: str, ckpt: str, device: str, wb: str, *, labels: bool
    ) -> Text:
        sep = (" │ ", "dim") if labels else ("│", "dim")
        title = self.pane_title if labels else self.pane_title[:4]
        parts: list[Any] = [(title, "bold"), sep, run, sep, prefab, sep]
        if ckpt:
            # Chat's model and the start of every new run (tui/init_from.py): say the latter
            parts += [("new runs from " if labels else "", "dim"), ckpt, sep]
        if not labels and device == "not initialised":
            device = "—"
        parts += [("device: " if labels else "dev ", "dim"), device, sep, ("W&B ", "dim"), wb]
        return Text.assemble(*parts, no_wrap=True, overflow="ellipsis")
