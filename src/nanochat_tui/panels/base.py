"""The Panel widget base class and the formatting helpers panels share.

A panel is configured by a PanelSpec and redrawn from a MetricStore (panels/store.py, pure data)
at most once per refresh, only when the store changed. No JAX.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, ClassVar

from rich.text import Text
from textual.css.query import NoMatches
from textual.widget import Widget

from nanochat_tui.config.schema import PanelSpec
from nanochat_tui.panels.store import MetricStore


def threshold_style(value: float | None, thresholds: dict[str, float]) -> str:
    """Rich style for a value given ``above``/``below`` (red) and ``warn_above``/``warn_below``."""
    if value is None or not math.isfinite(value):
        return "bold red" if value is not None else "dim"
    if "above" in thresholds and value > thresholds["above"]:
        return "bold red"
    if "below" in thresholds and value < thresholds["below"]:
        return "bold red"
    if "warn_above" in thresholds and value > thresholds["warn_above"]:
        return "bold yellow"
    if "warn_below" in thresholds and value < thresholds["warn_below"]:
        return "bold yellow"
    return "bold green" if thresholds else "bold"


THRESHOLD_KEYS = ("above", "below", "warn_above", "warn_below")


def label_grid(rows: list[tuple[str, str | Text]], gap: int = 2) -> Text:
    """Rows of (dim label, value) as one ``Text`` with the values aligned.

    A plain ``Text`` instead of a Rich ``Table``: a table is re-measured and re-rendered on every
    repaint (≈10 ms at 160 columns), a Text is compared and reused by ``Panel.set_body``.
    """
    width = max((len(label) for label, _ in rows), default=0) + gap
    text = Text()
    for i, (label, value) in enumerate(rows):
        if i:
            text.append("\n")
        text.append(label.ljust(width), style="dim")
        text.append(value if isinstance(value, Text) else Text(value))
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


def fmt_num(value: float | None, digits: int = 4) -> str:
    """Compact number: 1.23k, 4.5M, 0.0123; '—' for missing."""
    if value is None:
        return "—"
    if not math.isfinite(value):
        return str(value)
    a = abs(value)
    for div, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{value / div:.3g}{suffix}"
    return f"{value:.{digits}g}"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "—"
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


class Panel(Widget):
    """A live panel: a widget configured by a PanelSpec and redrawn from a MetricStore.

    Subclasses set ``DEFAULT_SOURCE``/``DEFAULT_TITLE`` and implement ``draw(store)``; the screen
    calls ``update_from(store)`` at most once per refresh, and only when the store changed.
    """

    DEFAULT_SOURCE: ClassVar[str | None] = None
    DEFAULT_TITLE: ClassVar[str] = "panel"
    can_focus = True

    DEFAULT_CSS = """
    Panel {
        border: round $primary-darken-2;
        border-title-color: $text-accent;
        height: 1fr;
        min-height: 5;
        padding: 0 1;
    }
    Panel:focus {
        border: round $accent;
    }
    """

    def __init__(self, spec: PanelSpec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.redraw_count = 0
        self._store: MetricStore | None = None
        self._drawn: tuple[Any, ...] | None = None  # (store, version, size) of the last draw
        self.border_title = self.title
        self.styles.column_span = spec.width
        self.styles.row_span = spec.height

    @property
    def source(self) -> str | None:
        return self.spec.source or self.DEFAULT_SOURCE

    @property
    def title(self) -> str:
        return self.spec.title or self.DEFAULT_TITLE

    @property
    def columns(self) -> int:
        """Chart columns available (for decimation); a sane default before layout."""
        return max(20, self.size.width - 8) if self.size.width else 60

    def update_from(self, store: MetricStore) -> None:
        """Redraw from the store (the caller holds ``store.lock`` and does the coalescing)."""
        self.redraw_count += 1
        self._store = store
        if self.border_title != self.title:
            self.border_title = self.title
        self._safe_draw(store)

    def set_body(self, selector: str, content: Any) -> None:
        """Update the ``Static`` at ``selector`` only if its content changed, and with a layout
        pass only if its line count changed (an unchanged panel costs no repaint, a changed one
        repaints just itself)."""
        from textual.widgets import Static

        body = self.query_one(selector, Static)
        previous = getattr(body, "_last_content", None)
        if isinstance(content, Text) and isinstance(previous, Text):
            if previous == content:
                return
            layout = previous.plain.count("\n") != content.plain.count("\n")
        else:
            layout = True
        body._last_content = content  # type: ignore[attr-defined]
        body.update(content, layout=layout)

    def _safe_draw(self, store: MetricStore) -> None:
        # children not composed yet: on_resize draws once they are laid out
        with contextlib.suppress(NoMatches):
            self.draw(store)
            self._drawn = (store, store.version, self.size)

    def on_resize(self) -> None:
        """Layout-dependent drawing (bar widths, legends) follows the panel's new size.

        A screen shown again reports a resize to the size it already had: nothing to redraw.
        """
        store = self._store
        if store is not None and self._drawn != (store, store.version, self.size):
            with store.lock:
                self._safe_draw(store)

    def draw(self, store: MetricStore) -> None:  # pragma: no cover - abstract
        raise NotImplementedError
