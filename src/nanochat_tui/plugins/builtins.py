"""Built-in screens, panels and config categories, registered exactly as a plugin would."""

from __future__ import annotations

from nanochat_tui.config.schema import CATEGORIES
from nanochat_tui.plugins import Registry


def register(registry: Registry) -> None:
    for title, section in CATEGORIES.items():
        registry.add_category(title, section)
    # Screens and panels are added here by the TUI and panel modules as they land:
    # registry.add_screen("config", "Config", "1", "nanochat_tui.tui.screens.config:ConfigScreen")
    # registry.add_panel("loss", "nanochat_tui.panels.builtin:LossPanel", "loss curve")
