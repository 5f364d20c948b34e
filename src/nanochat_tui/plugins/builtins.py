"""Built-in screens, panels and config categories, registered exactly as a plugin would."""

from __future__ import annotations

from nanochat_tui.config.categories import CATEGORIES
from nanochat_tui.plugins import Registry


def register(registry: Registry) -> None:
    for title, section in CATEGORIES.items():
        registry.add_category(title, section)
    # Screens and panels are added here by the TUI and panel modules as they land:
    # registry.add_screen("config", "Config", "1", "nanochat_tui.tui.screens.config:ConfigScreen")
    # registry.add_panel("loss", "nanochat_tui.panels.builtin:LossPanel", "loss curve")
    # cockpit: Runs and Live panes + the six built-in panel types
    registry.add_screen("runs", "Runs", "4", "nanochat_tui.tui.screens.runs:RunsPane", order=40)
    registry.add_screen("live", "Live", "5", "nanochat_tui.tui.screens.live:LivePane", order=50)
    registry.add_screen(
        "compare", "Compare", "8", "nanochat_tui.tui.screens.compare:ComparePane", order=70
    )
    from nanochat_tui.panels.catalog import BUILTIN_PANELS, PANEL_DESCRIPTIONS

    for type_, ref in BUILTIN_PANELS.items():
        registry.add_panel(type_, ref, PANEL_DESCRIPTIONS[type_])
    # shell: Config and Auth panes
    registry.add_screen(
        "config", "Config", "1", "nanochat_tui.tui.screens.config:ConfigPane", order=10
    )
    registry.add_screen("auth", "Auth", "6", "nanochat_tui.tui.screens.auth:AuthPane", order=60)
    # screens: Checkpoints and Eval/Chat panes
    registry.add_screen(
        "checkpoints",
        "Checkpoints",
        "2",
        "nanochat_tui.tui.screens.checkpoints:CheckpointsPane",
        order=20,
    )
    registry.add_screen("chat", "Chat", "3", "nanochat_tui.tui.screens.chat:ChatPane", order=30)
    # alignment: the SOUL pane (its Datasets view opens from it)
    registry.add_screen("soul", "SOUL", "7", "nanochat_tui.tui.screens.soul:SoulPane", order=65)
    registry.add_screen(
        "plugins", "Plugins", "P", "nanochat_tui.tui.screens.plugins:PluginsPane", order=90
    )
    registry.add_screen("evals", "Evals", "9", "nanochat_tui.tui.screens.evals:EvalsPane", order=75)
