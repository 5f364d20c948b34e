"""The command palette provider: the active pane's ``palette_commands()`` plus global actions."""

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
    commands += app.global_commands()
    return commands


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
