"""The command palette provider: the active pane's ``palette_commands()``, every other key
binding of that pane (so each key is reachable from the palette), then the global actions."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

Command = tuple[str, str, Callable[[], object]]


def collect_commands(app) -> list[Command]:
    """(title, help, callback) for the current pane first, then the global ones."""
    commands: list[Command] = []
    pane = app.active_pane_widget()
    if pane is not None and hasattr(pane, "palette_commands"):
        try:
            commands += list(pane.palette_commands())
        except Exception as err:  # a pane bug must not break the palette
            app.log_error(f"palette_commands of {type(pane).__name__} failed: {err}")
    if pane is not None:
        commands += binding_commands(app, pane, commands)
    commands += app.global_commands()
    return commands


def binding_commands(app, pane, offered: list[Command]) -> list[Command]:
    """A palette entry for each of the pane's bindings its ``palette_commands`` do not cover."""
    from nanochat_tui.tui import keymap as km

    covered = {getattr(callback, "__name__", "") for _t, _h, callback in offered}
    title = pane_title(app)
    out: list[Command] = []
    for spec in km.widget_keys(pane, app.active_pane or "pane"):
        name = spec.action.split("(", 1)[0]
        if f"action_{name}" in covered:
            continue
        key = km.display_key(km.effective_key(spec, app.user_keymap))
        out.append(
            (f"{title}: {spec.description}", f"key {key}", partial(pane.run_action, spec.action))
        )
    return out


def pane_title(app) -> str:
    entry = app.pane_entry(app.active_pane or "")
    return entry.title if entry is not None else "Pane"


class ShellCommands(Provider):
    """Offers only what applies to the current pane, then pane switching, help, debug and quit."""

    async def discover(self) -> Hits:
        for title, help_, callback in collect_commands(self.app):
            yield DiscoveryHit(title, callback, help=help_)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_, callback in collect_commands(self.app):
            score = matcher.match(title)
            if score > 0:
                yield Hit(
                    score, matcher.highlight(title), partial(callback), text=title, help=help_
                )
