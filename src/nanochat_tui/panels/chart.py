"""Charts that never block the UI: plotext output is built in ONE background thread.

``ChartView`` is a plain widget whose ``render()`` returns the last built chart (a cached
``rich.text.Text``), so a repaint costs nothing. ``ChartView.show(lines)`` is cheap: if the data,
size and theme are unchanged it does nothing (cache hit), otherwise it queues a build job. The
``ChartBuilder`` thread takes jobs one at a time (each view has at most one pending job; a newer
request replaces it), builds them with its own plotext figure and posts the result back with the
thread-safe ``post_message``. Building one chart is 5-20 ms of pure Python (more under CPU load);
on the event loop that would add directly to key-press latency, here it only competes for the
GIL in 5 ms slices.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import threading
import time
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.text import Text
from textual.app import RenderResult
from textual.color import Color
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

Line = tuple[Sequence[float], Sequence[float], str]


class ChartBuilder:
    """A daemon thread that turns chart jobs into ``Text``; one pending job per view.

    ``duty`` caps the share of one CPU core the builder may use: after a build that took ``d``
    seconds it starts the next no sooner than ``d / duty`` later, so a fast stream can't make
    chart drawing eat into a training run on the same host (charts then update less often).
    """

    def __init__(self, duty: float = 0.05) -> None:
        self.duty = duty
        self._cond = threading.Condition()
        self._jobs: dict[int, tuple[ChartView, int, tuple[Any, ...]]] = {}
        self._busy = False
        self._hold_until = 0.0
        self.built = 0
        self._thread: threading.Thread | None = None

    def submit(self, view: ChartView, token: int, job: tuple[Any, ...]) -> None:
        with self._cond:
            self._jobs[id(view)] = (view, token, job)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="chart-builder", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def hold(self, seconds: float = 0.1) -> None:
        """Start no new build for up to ``seconds`` (the UI is painting a key's response and
        shouldn't share the GIL with plotext); ``release()`` ends the hold early."""
        with self._cond:
            self._hold_until = time.monotonic() + seconds

    def release(self) -> None:
        with self._cond:
            self._hold_until = 0.0
            self._cond.notify()

    def cancel(self, view: ChartView) -> None:
        with self._cond:
            self._jobs.pop(id(view), None)

    def idle(self) -> bool:
        """True when no job is queued or being built (tests wait for this)."""
        with self._cond:
            return not self._jobs and not self._busy

    def _loop(self) -> None:
        from textual_plotext.plot import Plot

        plot = Plot()
        not_before = 0.0
        while True:
            with self._cond:
                while not self._jobs or time.monotonic() < max(self._hold_until, not_before):
                    self._busy = bool(self._jobs)
                    wait = max(self._hold_until, not_before) - time.monotonic()
                    self._cond.wait(wait if self._jobs and wait > 0 else None)
                key = next(iter(self._jobs))
                view, token, job = self._jobs.pop(key)
                self._busy = True
            started, cpu = time.monotonic(), time.thread_time()
            try:
                text = build_chart(plot, *job)
            except Exception as err:  # a bad series must not kill the builder
                text = Text(f"chart error: {err}", style="red")
            strips = to_strips(text, job[2])
            took = time.thread_time() - cpu  # CPU seconds, not wall: load elsewhere doesn't count
            not_before = started + took / self.duty if self.duty < 1 else 0.0
            self.built += 1
            with contextlib.suppress(Exception):  # app closing / loop gone
                view.post_message(ChartView.Built(token, text, strips))
            with self._cond:
                self._busy = bool(self._jobs)


_BUILDER = ChartBuilder()


def chart_builder() -> ChartBuilder:
    """The process-wide chart builder."""
    return _BUILDER


def build_chart(
    plot: Any,
    lines: tuple[Line, ...],
    ylabel: str,
    width: int,
    height: int,
    theme: str,
    xlabel: str = "step",
) -> Text:
    """Build one chart with ``plot`` (a textual_plotext ``Plot``) as a Rich ``Text``."""
    plot.clear_data()
    plot.clear_figure()
    legend = len(lines) > 1 and height >= 12  # a legend hides a small chart
    for xs, ys, label in lines:
        if len(xs):
            plot.plot(list(xs), list(ys), label=label if legend else None, marker="braille")
    plot.xlabel(xlabel)
    if ylabel:
        plot.ylabel(ylabel)
    plot.plotsize(width, height)
    plot._set_size(width, height)
    plot.theme(theme)
    return Text.from_ansi(plot.build())


_CONSOLE = Console(
    file=io.StringIO(),
    width=1000,
    color_system="truecolor",
    legacy_windows=False,
    force_terminal=True,
)


def to_strips(text: Text, width: int) -> list[Strip]:
    """Text lines → Textual strips of exactly ``width`` cells (done in the builder thread, so the
    event loop only blits them)."""
    strips = []
    for line in text.split("\n", allow_blank=True):
        line.no_wrap = True
        segments = [seg for seg in line.render(_CONSOLE) if seg.text != "\n"]
        strips.append(Strip(segments).adjust_cell_length(width))
    return strips


def _register_theme(app: Any) -> str:
    """Register (once) the plotext theme matching the app's Textual theme; returns its name."""
    from plotext._dict import themes
    from textual_plotext.plot import _rgbify_theme, _sequence

    name = f"textual-auto-{app.theme}"
    if name not in themes:
        variables = app.theme_variables
        surface = Color.parse(variables.get("surface")).rgb
        themes[name] = _rgbify_theme(
            surface, surface, Color.parse(variables.get("foreground")).rgb, "default", _sequence
        )
    return name


class ChartView(Widget):
    """A plotext chart whose build happens off the event loop; ``render()`` is a cache read."""

    DEFAULT_CSS = """
    ChartView { width: 1fr; height: 1fr; }
    """

    class Built(Message):
        """A chart build finished (posted from the builder thread)."""

        def __init__(self, token: int, text: Text, strips: list[Strip]) -> None:
            super().__init__()
            self.token = token
            self.text = text
            self.strips = strips

    _tokens = itertools.count(1)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._text = Text()
        self._strips: list[Strip] = []
        self._lines: tuple[Line, ...] | None = None
        self._ylabel = ""
        self._xlabel = "step"
        self._key: tuple[Any, ...] | None = None
        self._token = 0
        self.requests = 0  # build jobs queued (cache misses)
        self.shown = 0  # builds that reached the screen

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, lambda _theme: self._submit())

    def on_unmount(self) -> None:
        _BUILDER.cancel(self)

    def show(self, lines: Sequence[Line], *, ylabel: str = "", xlabel: str = "step") -> None:
        """Display these lines; a no-op when nothing changed since the last call."""
        self._lines = tuple((tuple(xs), tuple(ys), label) for xs, ys, label in lines)
        self._ylabel = ylabel
        self._xlabel = xlabel
        self._submit()

    def _submit(self) -> None:
        if self._lines is None or not self.is_attached:
            return
        width, height = self.size.width, self.size.height
        if width <= 0 or height <= 0:
            return  # not laid out yet (or hidden): on_resize submits
        theme = _register_theme(self.app)
        key = (self._lines, self._ylabel, width, height, theme, self._xlabel)
        if key == self._key:
            return
        self._key = key
        self._token = next(self._tokens)
        self.requests += 1
        _BUILDER.submit(self, self._token, key)

    def on_resize(self) -> None:
        self._submit()

    def on_chart_view_built(self, message: Built) -> None:
        message.stop()
        if message.token == self._token:
            self._text = message.text
            self._strips = message.strips
            self.shown += 1
            self.refresh()

    def render(self) -> RenderResult:
        """The last chart as Text (the screen paints from ``render_line`` instead)."""
        return self._text

    def render_line(self, y: int) -> Strip:
        """Line API: hand the compositor the strips prebuilt in the builder thread."""
        width = self.size.width
        if y < len(self._strips):
            strip = self._strips[y]
            return strip if strip.cell_length == width else strip.adjust_cell_length(width)
        return Strip.blank(width)
