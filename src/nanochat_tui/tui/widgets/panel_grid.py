"""PanelGrid: the panels of one live screen and their coalescing redraw."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.containers import Grid
from textual.widget import Widget
from textual.widgets import Static

from nanochat_tui.config.schema import ScreenSpec
from nanochat_tui.panels.base import Panel
from nanochat_tui.panels.store import MetricStore


class PanelGrid(Grid):
    """The panels of one screen + the coalescing redraw: ``tick()`` redraws only when dirty.

    Every declared screen gets its own grid, mounted once; switching screens only toggles which
    grid is displayed (ContentSwitcher), so ``]``/``[`` never remount a panel. Hidden grids are
    not redrawn.
    """

    DEFAULT_CSS = """
    PanelGrid { grid-gutter: 0 1; height: 1fr; background: $background; }
    """

    def __init__(self, store: MetricStore, spec: ScreenSpec | None = None, **kwargs: Any) -> None:
        spec = spec or ScreenSpec(name="empty", panels=[])
        super().__init__(*self._make_panels(spec), **kwargs)
        self.store = store
        self.spec = spec
        self.drawn_version = -1
        self.redraws = 0
        self.styles.grid_size_columns = spec.columns

    @staticmethod
    def _make_panels(spec: ScreenSpec) -> list[Widget]:
        from nanochat_tui.panels.builtin import panel_class

        widgets: list[Widget] = []
        for panel_spec in spec.panels:
            try:
                widgets.append(panel_class(panel_spec.type)(panel_spec))
            except KeyError as err:
                widgets.append(Static(Text(str(err).strip("'\""), style="red")))
        return widgets

    @property
    def panels(self) -> list[Panel]:
        return list(self.query_children(Panel))

    async def show_screen(self, spec: ScreenSpec) -> None:
        """Replace the panels with those of ``spec`` (after an edit: add/edit/remove)."""
        self.spec = spec
        await self.remove_children()
        self.styles.grid_size_columns = spec.columns
        await self.mount_all(self._make_panels(spec))
        self.drawn_version = -1

    def tick(self, *, force: bool = False) -> bool:
        """Redraw every panel once if the store changed since the last redraw; True if it did."""
        store = self.store
        if not force and store.version == self.drawn_version:
            return False
        with store.lock:
            version = store.version
            for panel in self.panels:
                panel.update_from(store)
        self.drawn_version = version
        self.redraws += 1
        return True
