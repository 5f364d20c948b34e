"""The Preferences panel: how a dpo / orpo / simpo run separates chosen from rejected replies.

It charts the step events' ``aux.rewards/margins`` and ``aux.rewards/accuracies`` (TRL's names),
heads them with the latest held-out values (``eval_rewards/*`` of the last ``eval`` event) and
lists the held-out pairs with the highest and the lowest reward margin (the eval event's
``pairs``). Options: ``smoothing`` (EMA weight of the chart, default 0.9), ``pairs`` (how many of
each to list, default 1).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from nanochat_tui.panels.base import Panel, fmt_num, threshold_style
from nanochat_tui.panels.chart import ChartView
from nanochat_tui.panels.store import MetricStore

MARGINS, ACCURACIES = "aux.rewards/margins", "aux.rewards/accuracies"


def _pair_text(label: str, pair: dict[str, Any], width: int, style: str) -> Text:
    text = Text()
    text.append(f"{label} ", style=f"bold {style}")
    text.append(f"{fmt_num(pair.get('margin'), 3)} ", style=style)
    text.append(str(pair.get("id", ""))[:width], style="dim")
    for side, mark, colour in (("chosen", "+", "green"), ("rejected", "-", "red")):
        reply = str(pair.get(side, "")).replace("\n", "⏎ ")
        text.append(f"\n  {mark} ", style=colour)
        text.append(reply[: max(10, width - 4)])
    return text


class PreferencesPanel(Panel):
    """Reward margins and accuracies over steps, held-out values, best/worst held-out pairs."""

    DEFAULT_SOURCE = MARGINS
    DEFAULT_TITLE = "preferences"

    DEFAULT_CSS = """
    PreferencesPanel > .headline { height: auto; }
    PreferencesPanel > ChartView { height: 1fr; min-height: 4; }
    PreferencesPanel > .pairs { height: auto; max-height: 9; }
    """

    def compose(self) -> ComposeResult:
        yield Static("", classes="headline")
        yield ChartView()
        yield Static("", classes="pairs")

    def draw(self, store: MetricStore) -> None:
        alpha = float(self.spec.options.get("smoothing", 0.9) or 0.0)
        cols = self.columns
        head = Text()
        margin, accuracy = store.latest(self.source or MARGINS), store.latest(ACCURACIES)
        head.append("margin ")
        head.append(fmt_num(margin), style=threshold_style(margin, self.spec.thresholds))
        head.append("  accuracy ")
        head.append("—" if accuracy is None else f"{accuracy:.0%}", style="bold")
        ev = store.last_eval
        if "eval_rewards/accuracies" in ev:
            head.append(
                f"\nheld-out @{ev.get('step')}: accuracy {ev['eval_rewards/accuracies']:.0%}  "
                f"margin {fmt_num(ev.get('eval_rewards/margins'))}",
                style="cyan",
            )
        elif not store.get(self.source or MARGINS):
            head.append("\nno preference metrics yet (train.stage dpo | orpo | simpo)", style="dim")
        self.set_body(".headline", head)
        lines = []
        for name, label in ((self.source or MARGINS, "margin"), (ACCURACIES, "accuracy")):
            series = store.get(name)
            if series is not None:
                xs, ys = series.smoothed(alpha, cols) if alpha > 0 else series.points(cols)
                lines.append((xs, ys, label))
        self.query_one(ChartView).show(lines)
        self.set_body(".pairs", self._pairs(ev.get("pairs") or {}))

    def _pairs(self, pairs: dict[str, list[dict[str, Any]]]) -> Text:
        count = int(self.spec.options.get("pairs", 1))
        width = max(20, (self.size.width or 60) - 4)
        if not pairs:
            return Text("best/worst held-out pairs after the first evaluation", style="dim")
        shown = [
            _pair_text(label, pair, width, style)
            for label, style in (("best", "green"), ("worst", "red"))
            for pair in list(pairs.get(label) or [])[:count]
        ]
        return Text("\n").join(shown)
