"""MetricStore and Series: what every live panel reads, rebuilt from events (pure data).

MetricStore ingests events (telemetry/events.py) and keeps, per numeric metric, a DECIMATED
history: the recent tail at full resolution plus min/max/mean buckets whose width doubles whenever
there are too many, so memory and draw cost stay flat over a 1e6-step run. ``points(columns)``
hands a chart about two points per column (each column's min and max), which keeps every peak.

Updates are COALESCED: ``ingest`` only bumps ``version``; a screen redraws its panels on a timer
(``refresh_ms``) and only when the version moved, so 1000 events between two refreshes cost one
redraw. No widgets, no JAX: the panel widgets (panels/base.py) read it.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

# Step-event fields that are not metrics (or not numbers worth charting).
_NOT_METRICS = frozenset({"type", "time", "step"})


class Series:
    """One metric over steps: full-resolution tail + bucketed (min, max, mean) history."""

    __slots__ = ("_buckets", "_width", "count", "last", "max_buckets", "tail")

    def __init__(self, max_buckets: int = 1024, tail: int = 512) -> None:
        # bucket = [x_first, x_last, x_at_min, y_min, x_at_max, y_max, y_sum, n]
        self._buckets: list[list[float]] = []
        self._width = 1  # raw points per bucket; doubles when buckets overflow
        self.max_buckets = max_buckets
        self.tail: deque[tuple[float, float]] = deque(maxlen=tail)
        self.count = 0
        self.last: tuple[float, float] | None = None

    def add(self, x: float, y: float) -> None:
        """Record y at step x (non-finite values are kept as ``last`` only)."""
        self.last = (x, y)
        if not math.isfinite(y):
            return
        self.count += 1
        self.tail.append((x, y))
        b = self._buckets[-1] if self._buckets else None
        if b is not None and b[7] < self._width:
            b[1] = x
            if y < b[3]:
                b[2], b[3] = x, y
            if y > b[5]:
                b[4], b[5] = x, y
            b[6] += y
            b[7] += 1
        else:
            self._buckets.append([x, x, x, y, x, y, y, 1])
            if len(self._buckets) > self.max_buckets:
                self._merge_pairs()

    def _merge_pairs(self) -> None:
        merged = []
        for i in range(0, len(self._buckets) - 1, 2):
            a, b = self._buckets[i], self._buckets[i + 1]
            lo = (a[2], a[3]) if a[3] <= b[3] else (b[2], b[3])
            hi = (a[4], a[5]) if a[5] >= b[5] else (b[4], b[5])
            merged.append([a[0], b[1], lo[0], lo[1], hi[0], hi[1], a[6] + b[6], a[7] + b[7]])
        if len(self._buckets) % 2:
            merged.append(self._buckets[-1])
        self._buckets = merged
        self._width *= 2

    @property
    def stored(self) -> int:
        """How many numbers this series holds (for the flat-memory test)."""
        return len(self._buckets) + len(self.tail)

    def minimum(self) -> float | None:
        return min((b[3] for b in self._buckets), default=None)

    def maximum(self) -> float | None:
        return max((b[5] for b in self._buckets), default=None)

    def _raw_complete(self) -> bool:
        return self.count == len(self.tail)

    def points(self, columns: int) -> tuple[list[float], list[float]]:
        """At most 2 points per column (its min and max, in x order) + the newest point; keeps extremes."""
        columns = max(1, columns)
        if self._raw_complete() and self.count <= 2 * columns:
            return [p[0] for p in self.tail], [p[1] for p in self.tail]
        if not self._buckets:
            return [], []
        x0, x1 = self._buckets[0][0], self._buckets[-1][1]
        span = (x1 - x0) or 1.0
        cols: dict[int, list[float]] = {}
        for b in self._buckets:
            col = min(columns - 1, int((b[0] - x0) / span * columns))
            c = cols.get(col)
            if c is None:
                cols[col] = [b[2], b[3], b[4], b[5]]
            else:
                if b[3] < c[1]:
                    c[0], c[1] = b[2], b[3]
                if b[5] > c[3]:
                    c[2], c[3] = b[4], b[5]
        xs: list[float] = []
        ys: list[float] = []
        for col in sorted(cols):
            xmin, ymin, xmax, ymax = cols[col]
            pts = (
                [(xmin, ymin)]
                if (xmin, ymin) == (xmax, ymax)
                else sorted([(xmin, ymin), (xmax, ymax)])
            )
            for x, y in pts:
                xs.append(x)
                ys.append(y)
        if self.tail and self.tail[-1][0] > xs[-1]:  # the newest point always shows
            xs.append(self.tail[-1][0])
            ys.append(self.tail[-1][1])
        return xs, ys

    def smoothed(self, alpha: float, columns: int) -> tuple[list[float], list[float]]:
        """Debiased EMA (weight ``alpha`` on the past). Exact while all raw points are in the tail;
        afterwards the EMA runs over bucket means (a bucket is wider than the EMA's memory then)."""
        if self._raw_complete():
            raw = list(self.tail)
        else:
            raw = [((b[0] + b[1]) / 2, b[6] / b[7]) for b in self._buckets]
        xs, ys, ema = [], [], 0.0
        for i, (x, y) in enumerate(raw, start=1):
            ema = alpha * ema + (1 - alpha) * y
            xs.append(x)
            ys.append(ema / (1 - alpha**i) if alpha < 1 else y)
        if len(xs) > 2 * columns:  # plain stride: the EMA is already smooth
            stride = math.ceil(len(xs) / (2 * columns))
            xs, ys = xs[::stride] + xs[-1:], ys[::stride] + ys[-1:]
        return xs, ys


class MetricStore:
    """Everything the panels show, rebuilt from events; thread-safe (ingest from a tail worker)."""

    def __init__(self, max_buckets: int = 1024, tail: int = 512, keep: int = 50) -> None:
        self.lock = threading.RLock()
        self.max_buckets, self.tail_len = max_buckets, tail
        self.series: dict[str, Series] = {}
        self.version = 0
        self.events_seen = 0
        self.run_start: dict[str, Any] = {}
        self.last_step: dict[str, Any] = {}
        self.first_step: int | None = None
        self.last_eval: dict[str, Any] = {}
        self.run_end: dict[str, Any] = {}
        self.last_error: dict[str, Any] = {}
        self.last_heartbeat: float | None = None
        self.last_device: dict[str, Any] = {}  # the latest heartbeat's device snapshot
        self.samples: deque[dict[str, Any]] = deque(maxlen=keep)
        self.checkpoints: deque[dict[str, Any]] = deque(maxlen=keep)
        self.patches: deque[dict[str, Any]] = deque(maxlen=keep)
        self.logs: deque[dict[str, Any]] = deque(maxlen=keep * 4)
        self.counts: dict[str, int] = {}
        self.started_wall: float | None = None
        self.last_time: float | None = None
        self.patched_iterations: int | None = None
        self.phase: dict[str, Any] = {}  # the latest start-up "phase" event

    # ------------------------------------------------------------ ingest

    def ingest(self, events: Iterable[dict[str, Any]]) -> int:
        """Fold events in; returns how many. Cheap: no drawing happens here."""
        n = 0
        with self.lock:
            for event in events:
                self._ingest_one(event)
                n += 1
            if n:
                self.version += 1
                self.events_seen += n
        return n

    def _record(self, name: str, x: float, value: Any) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return
        s = self.series.get(name)
        if s is None:
            s = self.series[name] = Series(self.max_buckets, self.tail_len)
        s.add(x, float(value))

    def _ingest_one(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        self.counts[kind] = self.counts.get(kind, 0) + 1
        t = event.get("time")
        if isinstance(t, (int, float)):
            self.last_time = t
            if self.started_wall is None:
                self.started_wall = t
        step = event.get("step")
        if kind == "step" and isinstance(step, int):
            if self.first_step is None:
                self.first_step = step
            self.last_step = event
            for key, value in event.items():
                if key in _NOT_METRICS:
                    continue
                if isinstance(value, dict):
                    for sub, v in value.items():
                        self._record(f"{key}.{sub}", step, v)
                else:
                    self._record(key, step, value)
        elif kind == "eval":
            self.last_eval = event
            for key in ("val_bpb", "val_loss"):
                if key in event:
                    self._record(key, step if isinstance(step, int) else 0, event[key])
        elif kind == "run_start":
            if not event.get("resumed_from_step") and self.last_step:
                # a new run in the same log (a pipeline's next step): its charts start afresh
                self.series, self.first_step, self.last_step, self.last_eval = {}, None, {}, {}
            self.run_start = event
            self.run_end = {}
            self.patched_iterations = None  # a resumed run states its own length again
            self.phase = {}
            if isinstance(t, (int, float)):
                self.started_wall = t
        elif kind == "sample":
            self.samples.append(event)
        elif kind == "checkpoint":
            self.checkpoints.append(event)
        elif kind == "patch":
            self.patches.append(event)
            n_iter = event.get("num_iterations")
            if event.get("ok") and isinstance(n_iter, int) and n_iter > 0:
                self.patched_iterations = n_iter  # the bar and the ETA follow the patched length
        elif kind == "log":
            self.logs.append(event)
        elif kind == "error":
            self.last_error = event
            self.logs.append({"level": "error", "message": event.get("message", ""), **event})
        elif kind == "run_end":
            self.run_end = event
        elif kind == "phase":
            self.phase = event
        elif kind == "heartbeat":
            self.last_heartbeat = t if isinstance(t, (int, float)) else time.time()
            if isinstance(event.get("device"), dict):
                self.last_device = event["device"]

    # ------------------------------------------------------------ reading

    def get(self, name: str) -> Series | None:
        return self.series.get(name)

    def latest(self, name: str) -> float | None:
        s = self.series.get(name)
        return s.last[1] if s and s.last else None

    @property
    def step(self) -> int:
        return int(self.last_step.get("step", 0) or 0)

    @property
    def num_iterations(self) -> int | None:
        """The run's length in steps: the latest applied patch's, else run_start's."""
        if self.patched_iterations is not None:
            return self.patched_iterations
        n = self.run_start.get("num_iterations")
        return int(n) if isinstance(n, (int, float)) and n > 0 else None

    def starting_phase(self, now: float | None = None) -> tuple[str, float, str] | None:
        """(phase, seconds since the run started, detail) while the run is starting up: a phase
        event arrived, it is not "training" and no step has come yet; else None."""
        phase = self.phase
        if not phase or phase.get("phase") == "training" or self.last_step or self.run_end:
            return None
        elapsed = float(phase.get("elapsed_s") or 0.0)
        t = phase.get("time")
        if isinstance(t, (int, float)):  # keep counting between phase events
            elapsed += max(0.0, (time.time() if now is None else now) - t)
        name = str(phase.get("phase", "?")).replace("_", " ")
        return name, elapsed, str(phase.get("detail") or "")

    @property
    def status(self) -> str:
        if self.run_end:
            return str(self.run_end.get("status", "finished"))
        if self.run_start or self.last_step:
            return "running"
        return "waiting"

    def metric_names(self) -> list[str]:
        with self.lock:
            return sorted(self.series)
