"""The expert heat-map panel: layers × experts, colour = load relative to uniform, live, with a
time scrubber over the recorded steps.

Reads the step events' ``aux`` entries ``moe/L{i}/E{j}`` (share of a layer's assignments that went
to expert j) from the metric store. A cell shows ``load × E`` (1.0 = a uniform share): blue below,
green near 1, yellow to red above. Thresholds (``thresholds:`` in the panel spec) mark experts
``dead`` (relative load ≤ ``dead``, default 0.1) and ``hot`` (≥ ``hot``, default 2.0).

Keys (the panel focused): ``←``/``→`` step back/forward through history, ``home`` the oldest
step kept at full resolution, ``end`` back to live. The scrubber covers the store's full-resolution
tail (the last 512 steps); older steps are kept only as decimated buckets.

Prefab: ``{type: moe-heatmap, width: 2, thresholds: {hot: 2.5, dead: 0.05}}``.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Static

from nanochat_tui.panels.base import Panel
from nanochat_tui.panels.store import MetricStore

_KEY = re.compile(r"^aux\.moe/L(\d+)/E(\d+)$")
DEAD, HOT = 0.1, 2.0


def load_grid(store: MetricStore) -> tuple[list[int], dict[tuple[int, int], dict[int, float]]]:
    """(steps recorded, {(layer, expert): {step: load}}) from the store's full-resolution tails."""
    cells: dict[tuple[int, int], dict[int, float]] = {}
    steps: set[int] = set()
    for name, series in store.series.items():
        m = _KEY.match(name)
        if m is None:
            continue
        values = {int(x): y for x, y in series.tail}
        cells[(int(m.group(1)), int(m.group(2)))] = values
        steps.update(values)
    return sorted(steps), cells


def cell_style(rel: float, dead: float, hot: float) -> str:
    """Background colour for a relative load (1.0 = uniform)."""
    if rel <= dead:
        return "bold white on grey23"
    if rel >= hot:
        return "bold white on red3"
    if rel < 0.5:
        return "black on steel_blue1"
    if rel < 0.8:
        return "black on pale_turquoise1"
    if rel <= 1.25:
        return "black on pale_green3"
    if rel <= 1.6:
        return "black on yellow3"
    return "black on dark_orange"


class ExpertHeatmap(Panel):
    """Layers × experts load map with a time scrubber."""

    DEFAULT_TITLE = "experts (load ÷ uniform)"
    DEFAULT_CSS = """
    ExpertHeatmap > #heatmap-body { height: auto; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("left", "scrub(-1)", "Heat-map: one step back", id="moe.back"),
        Binding("right", "scrub(1)", "Heat-map: one step forward", id="moe.forward"),
        Binding("home", "scrub_to(0)", "Heat-map: oldest step", id="moe.oldest"),
        Binding("end", "live", "Heat-map: back to live", id="moe.live"),
    ]

    def __init__(self, spec: Any, **kwargs: Any) -> None:
        super().__init__(spec, **kwargs)
        self.pinned_step: int | None = None  # None = live (follow the newest step)

    def compose(self) -> ComposeResult:
        yield Static("", id="heatmap-body")

    @property
    def thresholds(self) -> tuple[float, float]:
        t = {**self.spec.options, **self.spec.thresholds}  # the live pane's text form: options
        return float(t.get("dead", DEAD)), float(t.get("hot", HOT))

    def draw(self, store: MetricStore) -> None:
        self.set_body("#heatmap-body", self.render_map(store))

    def render_map(self, store: MetricStore) -> Text:
        steps, cells = load_grid(store)
        if not cells:
            return Text("no expert loads yet (a run with plugins.moe on reports them)", "dim")
        step = steps[-1] if self.pinned_step is None else self.pinned_step
        if step not in steps:
            step = min(steps, key=lambda s: abs(s - step))
        layers = sorted({layer for layer, _ in cells})
        experts = sorted({e for _, e in cells})
        n_exp = len(experts)
        dead_t, hot_t = self.thresholds
        cell_w = 5 if self.size.width == 0 or self.size.width >= 8 + 5 * n_exp else 3
        text = Text()
        text.append("     ")
        for e in experts:
            text.append(f"E{e}".center(cell_w), "bold")
        text.append("\n")
        dead = hot = 0
        for layer in layers:
            text.append(f"L{layer:<3} ", "bold")
            for e in experts:
                value = cells.get((layer, e), {}).get(step)
                if value is None:
                    text.append(" · ".center(cell_w), "dim")
                    continue
                rel = value * n_exp
                dead += rel <= dead_t
                hot += rel >= hot_t
                label = f"{rel:.1f}" if cell_w >= 5 else f"{min(rel, 9.9):.0f}"
                text.append(label.center(cell_w), cell_style(rel, dead_t, hot_t))
            text.append("\n")
        index = steps.index(step)
        live = self.pinned_step is None
        text.append(f"step {step}", "bold")
        text.append(" (live)" if live else f" ({index + 1}/{len(steps)}, end: live)", "dim")
        text.append(f"   dead {dead}", "bold white on grey23" if dead else "dim")
        text.append(f"  hot {hot}", "bold white on red3" if hot else "dim")
        text.append(f"   ≤{dead_t:g}× dead · ≥{hot_t:g}× hot\n", "dim")
        width = max(10, min(60, (self.size.width or 40) - 4))
        pos = round(index / max(1, len(steps) - 1) * (width - 1))
        text.append("━" * pos, "dim")
        text.append("●", "bold")
        text.append("━" * (width - 1 - pos), "dim")
        text.append("  ←/→ scrub", "dim")
        return text

    # ------------------------------------------------------------ scrubbing

    def _steps(self) -> list[int]:
        if self._store is None:
            return []
        with self._store.lock:
            return load_grid(self._store)[0]

    def _redraw(self) -> None:
        if self._store is not None:
            with self._store.lock:
                self._safe_draw(self._store)

    def action_scrub(self, delta: int) -> None:
        steps = self._steps()
        if not steps:
            return
        current = steps[-1] if self.pinned_step is None else self.pinned_step
        index = min(range(len(steps)), key=lambda i: abs(steps[i] - current))
        self.pinned_step = steps[max(0, min(len(steps) - 1, index + delta))]
        self._redraw()

    def action_scrub_to(self, index: int) -> None:
        steps = self._steps()
        if steps:
            self.pinned_step = steps[index]
            self._redraw()

    def action_live(self) -> None:
        self.pinned_step = None
        self._redraw()
