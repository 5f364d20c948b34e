"""Server statistics over a sliding window: requests/s, tokens/s, latency p50/p99, slots.

Pure Python (no JAX): the server fills it, ``GET /stats`` returns ``snapshot()``, and the TUI's Serve
pane reads that JSON.
"""

from __future__ import annotations

import threading
import time
from collections import deque


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-th percentile (0–100) by linear interpolation; None for no values."""
    if not values:
        return None
    xs = sorted(values)
    rank = (len(xs) - 1) * q / 100
    lo = int(rank)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (rank - lo)


class ServeMetrics:
    """Thread-safe counters; rates and percentiles cover the last ``window_s`` seconds."""

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._tokens: deque[tuple[float, int]] = deque()
        self._done: deque[tuple[float, float, float | None]] = deque()  # (t, latency, ttft)
        self.requests_total = 0
        self.tokens_total = 0
        self.rejected_total = 0
        self.errors_total = 0

    def tokens(self, n: int = 1) -> None:
        with self._lock:
            self._tokens.append((time.monotonic(), n))
            self.tokens_total += n

    def finished(self, latency_s: float, ttft_s: float | None) -> None:
        with self._lock:
            self._done.append((time.monotonic(), latency_s, ttft_s))
            self.requests_total += 1

    def rejected(self) -> None:
        with self._lock:
            self.rejected_total += 1

    def error(self) -> None:
        with self._lock:
            self.errors_total += 1

    def snapshot(self, *, active: int, queued: int, slots: int) -> dict:
        now = time.monotonic()
        with self._lock:
            for q in (self._tokens, self._done):
                while q and q[0][0] < now - self.window_s:
                    q.popleft()
            span = max(1e-9, min(self.window_s, now - self.started))
            latencies = [d[1] for d in self._done]
            ttfts = [d[2] for d in self._done if d[2] is not None]
            return {
                "requests_per_s": len(self._done) / span,
                "tokens_per_s": sum(n for _, n in self._tokens) / span,
                "latency_p50_s": percentile(latencies, 50),
                "latency_p99_s": percentile(latencies, 99),
                "ttft_p50_s": percentile(ttfts, 50),
                "active_slots": active,
                "slots": slots,
                "queued": queued,
                "requests_total": self.requests_total,
                "tokens_total": self.tokens_total,
                "rejected_total": self.rejected_total,
                "errors_total": self.errors_total,
                "uptime_s": now - self.started,
                "window_s": self.window_s,
            }
