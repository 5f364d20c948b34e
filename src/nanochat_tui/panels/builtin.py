"""The six built-in panels: progress, loss, validation, samples, device, timers.

Each reads a MetricStore (panels/base.py) and is declared in a prefab's ``ui.screens[].panels``.
Options understood (``options:`` in the YAML):
  loss        smoothing (EMA weight 0..0.999, default 0), components (bool, default true)
  samples     count (how many samples to show, default 3)
  timers      style ("bars" | "sparkline", default "bars"; the step-time sparkline is always shown)
  device      host (bool, default true: show this machine's CPU/RAM via psutil)
Thresholds (``thresholds:``): above / below (red), warn_above / warn_below (yellow) on the
panel's headline value.
"""

from __future__ import annotations

import time
from typing import Any

import psutil
from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Sparkline, Static

from nanochat_tui.panels.base import Panel, fmt_duration, fmt_num, label_grid, threshold_style
from nanochat_tui.panels.chart import ChartView
from nanochat_tui.panels.store import MetricStore
from nanochat_tui.telemetry.device import device_memory_rows


def _bar(fraction: float, width: int) -> str:
    fraction = min(1.0, max(0.0, fraction))
    full = int(fraction * width)
    return "█" * full + "░" * (width - full)


class _ChartPanel(Panel):
    """Headline line + a chart built off the event loop (panels/chart.py)."""

    DEFAULT_CSS = """
    _ChartPanel > .headline { height: 1; }
    _ChartPanel > ChartView { height: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield Static("", classes="headline")
        yield ChartView()

    def _plot(self, lines: list[tuple[list[float], list[float], str]], *, ylabel: str = "") -> None:
        self.query_one(ChartView).show(lines, ylabel=ylabel)

    def _headline(self, text: Text) -> None:
        self.set_body(".headline", text)


class ProgressPanel(Panel):
    """Step bar, tokens, tok/s, ETA, elapsed."""

    DEFAULT_TITLE = "progress"

    def compose(self) -> ComposeResult:
        yield Static("", id="progress-body")

    def draw(self, store: MetricStore) -> None:
        step, total = store.step, store.num_iterations
        last = store.last_step
        width = max(10, self.size.width - 4) if self.size.width else 40
        text = Text()
        if total:
            frac = step / total
            text.append(_bar(frac, max(4, width - 8)), style="green")
            text.append(f" {frac:5.1%}\n")
            text.append(f"step {step:,}/{total:,}", style="bold")
        else:
            text.append(f"step {step:,}", style="bold")
        text.append(f"   status {store.status}\n", style=_status_style(store.status))
        tok_s = store.latest("tokens_per_s")
        text.append(f"tokens {fmt_num(last.get('tokens'))}   tok/s ")
        text.append(fmt_num(tok_s), style=threshold_style(tok_s, self.spec.thresholds))
        text.append("\n")
        eta = last.get("eta_s")
        if eta is None and total and tok_s and store.run_start.get("tokens_per_step"):
            eta = (total - step) * store.run_start["tokens_per_step"] / tok_s
        end = store.last_time if store.run_end else time.time()
        elapsed = (end - store.started_wall) if store.started_wall and end else None
        text.append(f"ETA {fmt_duration(eta) if not store.run_end else 'done'}   ")
        text.append(f"elapsed {fmt_duration(elapsed)}")
        if store.checkpoints:
            ck = store.checkpoints[-1]
            text.append(f"\nlast checkpoint: step {ck.get('step')} ({ck.get('reason', '')})")
        self.set_body("#progress-body", text)


def _status_style(status: str) -> str:
    return {"running": "green", "finished": "cyan", "stopped": "yellow", "failed": "bold red"}.get(
        status, "dim"
    )


class LossPanel(_ChartPanel):
    """Training loss (+ loss_components.*), optional EMA smoothing."""

    DEFAULT_SOURCE = "loss"
    DEFAULT_TITLE = "loss"

    def draw(self, store: MetricStore) -> None:
        source = self.source or "loss"
        alpha = float(self.spec.options.get("smoothing", 0.0) or 0.0)
        cols = self.columns
        lines: list[tuple[list[float], list[float], str]] = []
        series = store.get(source)
        headline = Text()
        value = store.latest(source)
        headline.append(f"{source} ")
        headline.append(fmt_num(value), style=threshold_style(value, self.spec.thresholds))
        if series is not None:
            if alpha > 0:
                xs, ys = series.smoothed(alpha, cols)
                lines.append((xs, ys, f"{source} ema"))
                if ys:
                    headline.append(f"  ema {fmt_num(ys[-1])}")
            else:
                xs, ys = series.points(cols)
                lines.append((xs, ys, source))
            headline.append(f"  min {fmt_num(series.minimum())}", style="dim")
        if self.spec.options.get("components", True) and source == "loss":
            for name in store.metric_names():
                if name.startswith("loss_components."):
                    xs, ys = store.series[name].points(cols)
                    lines.append((xs, ys, name.split(".", 1)[1]))
        self._headline(headline)
        self._plot(lines)


class ValidationPanel(_ChartPanel):
    """Validation snapshots (val bpb by default) over steps + the last value."""

    DEFAULT_SOURCE = "val_bpb"
    DEFAULT_TITLE = "validation"

    def draw(self, store: MetricStore) -> None:
        source = self.source or "val_bpb"
        series = store.get(source)
        value = store.latest(source)
        headline = Text(f"{source} ")
        headline.append(fmt_num(value), style=threshold_style(value, self.spec.thresholds))
        if series is not None and series.last:
            headline.append(
                f" @{int(series.last[0])}  best {fmt_num(series.minimum())}", style="dim"
            )
        else:
            headline.append("  (no evaluation yet)", style="dim")
        self._headline(headline)
        xs, ys = series.points(self.columns) if series else ([], [])
        self._plot([(xs, ys, source)])


class SamplesPanel(Panel):
    """The latest eval samples (prompt → completion)."""

    DEFAULT_TITLE = "samples"

    def compose(self) -> ComposeResult:
        yield Static("", id="samples-body")

    def draw(self, store: MetricStore) -> None:
        count = int(self.spec.options.get("count", 3))
        text = Text()
        if not store.samples:
            text.append("no samples yet (train.sample_every)", style="dim")
        else:
            event = store.samples[-1]
            text.append(f"step {event.get('step')}\n", style="bold")
            for sample in list(event.get("samples") or [])[:count]:
                text.append(str(sample.get("prompt", "")), style="cyan")
                text.append(str(sample.get("completion", "")).replace("\n", "⏎ ")[:400])
                text.append("\n")
        self.set_body("#samples-body", text)


class DevicePanel(Panel):
    """MFU, device memory, host CPU/RAM, utilization where reported."""

    DEFAULT_SOURCE = "mfu"
    DEFAULT_TITLE = "device"

    def compose(self) -> ComposeResult:
        yield Static("", id="device-body")

    def draw(self, store: MetricStore) -> None:
        start, last = store.run_start, store.last_step
        rows: list[tuple[str, str | Text]] = []
        device = start.get("device") or "—"
        count = start.get("device_count")
        rows.append(("device", f"{device}" + (f" ×{count}" if count else "")))
        rows.append(
            (
                "peak",
                f"{fmt_num(start.get('peak_flops'))}FLOP/s" if start.get("peak_flops") else "—",
            )
        )
        mfu = store.latest(self.source or "mfu")
        mfu_text = Text(
            f"{mfu:.1%}" if mfu is not None and self.source in (None, "mfu") else fmt_num(mfu)
        )
        mfu_text.stylize(threshold_style(mfu, self.spec.thresholds))
        rows.append((self.source or "mfu", mfu_text))
        per_device = device_memory_rows(store.last_device)
        if per_device:
            rows.extend(per_device)
        else:
            mem = last.get("device_memory_bytes")
            rows.append(
                ("device mem", f"{fmt_num(mem)}B" if mem is not None else "— (not reported)")
            )
        for key in ("device_util", "gpu_util", "host_cpu_percent", "host_ram_bytes"):
            if key in last:
                rows.append((key.replace("_", " "), fmt_num(last[key])))
        if self.spec.options.get("host", True):
            rows.append(("host cpu", f"{psutil.cpu_percent(interval=None):.0f}% (this machine)"))
            vm = psutil.virtual_memory()
            rows.append(("host ram", f"{fmt_num(vm.used)}B / {fmt_num(vm.total)}B"))
        self.set_body("#device-body", label_grid(rows))


_TIMERS = (
    ("data_wait", "data wait", "yellow"),
    ("compute_time", "compute", "green"),
    ("host_time", "host", "cyan"),
)


class TimersPanel(Panel):
    """Per-step time breakdown: data wait / compute / host, as bars or a step-time sparkline."""

    DEFAULT_SOURCE = "step_time"
    DEFAULT_TITLE = "timers"

    DEFAULT_CSS = """
    TimersPanel > Sparkline { height: 2; margin-top: 1; }
    """

    def compose(self) -> ComposeResult:
        yield Static("", id="timers-body")
        yield Sparkline([], summary_function=max)

    def draw(self, store: MetricStore) -> None:
        last = store.last_step
        parts = [(label, float(last.get(key) or 0.0), colour) for key, label, colour in _TIMERS]
        total = float(last.get("step_time") or 0.0) or sum(p[1] for p in parts)
        width = max(10, (self.size.width or 40) - 26)
        text = Text()
        step_time = store.latest(self.source or "step_time")
        text.append(f"{self.source or 'step_time'} ")
        text.append(
            f"{step_time * 1000:.1f} ms" if step_time is not None else "—",
            style=threshold_style(step_time, self.spec.thresholds),
        )
        if self.spec.options.get("style", "bars") == "bars":
            for label, value, colour in parts:
                frac = value / total if total else 0.0
                text.append(f"\n{label:>9} ")
                text.append(_bar(frac, width), style=colour)
                text.append(f" {value * 1000:7.1f} ms {frac:4.0%}")
        self.set_body("#timers-body", text)
        series = store.get(self.source or "step_time")
        spark = self.query_one(Sparkline)
        spark.data = series.points(self.columns)[1] if series else []


def panel_class(type_: str) -> Any:
    """The Panel class registered for ``type_`` (raises KeyError with the known types)."""
    from nanochat_tui.plugin_host import get_registry
    from nanochat_tui.registry import resolve

    entry = get_registry().panels.get(type_)
    if entry is None:
        known = ", ".join(sorted(get_registry().panels))
        raise KeyError(f"unknown panel type '{type_}'; known: {known}")
    return resolve(entry.ref)
