"""The telemetry hub: one ``emit(event)`` that the engine calls, fanned out to every consumer.

Order of delivery for each event:
  1. ``events.jsonl`` — synchronously, first. It is the source of truth; everything else is a copy.
  2. local callbacks (the caller's, e.g. a headless progress bar) — synchronously, errors swallowed.
  3. sinks (W&B, OpenTelemetry, ...) — each on its own background thread with a bounded queue.
     A full queue drops its oldest event and counts the drop; a sink that raises is retried with
     exponential backoff + jitter and then skipped; a sink that hangs only blocks its own thread.
     Training never waits for a sink.

``hub.health()`` reports each sink as ok / retrying / failed with its last error (secrets
scrubbed), and every change of health is also written as a ``sink`` event so the TUI can show it.
A sink whose real work happens on a thread of its own (OTel's batch exporter) reports its health
through ``bind_health(report)``.
The hub also polls plugin telemetry sources (``registry.sources``) and emits heartbeats.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from nanochat_tui.telemetry.events import Event, make_event
from nanochat_tui.telemetry.jsonl import JsonlWriter

log = logging.getLogger(__name__)

OK, RETRYING, FAILED = "ok", "retrying", "failed"


class Sink(Protocol):
    """Anything with a name that accepts events; ``close`` flushes at the end of a run."""

    name: str

    def handle(self, event: Event) -> None: ...

    def close(self) -> None: ...


def _scrubbed(err: BaseException) -> str:
    return _scrub_text(f"{type(err).__name__}: {err}")


def _scrub_text(text: str) -> str:
    from nanochat_tui.crash import known_secret_values, scrub

    return scrub(text, known_secret_values())[:300]


@dataclass
class SinkHealth:
    name: str
    status: str = OK
    last_error: str | None = None
    delivered: int = 0
    dropped: int = 0  # queue overflow (sink too slow)
    failed_events: int = 0  # gave up after retries
    queued: int = 0
    busy_s: float = 0.0  # how long the current call has been running

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _SinkWorker:
    """One sink, its bounded queue, its thread and its health."""

    def __init__(
        self,
        sink: Sink,
        *,
        queue_size: int,
        max_attempts: int,
        backoff_s: float,
        max_backoff_s: float,
        stall_s: float,
        on_health: Callable[[SinkHealth], None],
    ) -> None:
        self.sink = sink
        self.health = SinkHealth(getattr(sink, "name", type(sink).__name__))
        self._queue: deque[Event] = deque()
        self._queue_size = queue_size
        self._cond = threading.Condition()
        self._closing = False
        self._max_attempts = max_attempts
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._stall_s = stall_s
        self._on_health = on_health
        self._call_started: float | None = None
        self._sink_reported_failure = False
        bind = getattr(sink, "bind_health", None)
        if callable(bind):
            bind(self.report)
        self._thread = threading.Thread(
            target=self._loop, name=f"telemetry-{self.health.name}", daemon=True
        )
        self._thread.start()

    def put(self, event: Event) -> None:
        with self._cond:
            if len(self._queue) >= self._queue_size:
                self._queue.popleft()
                self.health.dropped += 1
            self._queue.append(event)
            self._cond.notify()

    def _set_status(self, status: str, error: str | None = None) -> None:
        changed = status != self.health.status
        self.health.status = status
        if error is not None:
            self.health.last_error = error
        if changed:
            self._on_health(self.snapshot())

    def report(self, status: str, error: str | None = None) -> None:
        """Health a sink reports about work done off the hub's thread (e.g. OTel's batch export):
        FAILED/RETRYING with a reason, or OK once it works again."""
        self._sink_reported_failure = status != OK
        if status == OK and self.health.status == OK:
            return
        self._set_status(status, _scrub_text(error) if error else None)

    def snapshot(self) -> SinkHealth:
        with self._cond:
            self.health.queued = len(self._queue)
        started = self._call_started
        self.health.busy_s = time.monotonic() - started if started is not None else 0.0
        return SinkHealth(**self.health.__dict__)

    def check_stall(self) -> None:
        """A call running longer than ``stall_s`` marks the sink failed (it may be hung)."""
        started = self._call_started
        stalled = started is not None and time.monotonic() - started > self._stall_s
        if stalled and self.health.status != FAILED:
            self._set_status(FAILED, f"no response for {time.monotonic() - started:.0f} s")

    def _call(self, event: Event) -> None:
        self._call_started = time.monotonic()
        try:
            self.sink.handle(event)
        finally:
            self._call_started = None

    def _deliver(self, event: Event) -> None:
        for attempt in range(self._max_attempts):
            try:
                self._call(event)
            except Exception as err:
                error = _scrubbed(err)
                if attempt + 1 >= self._max_attempts:
                    self.health.failed_events += 1
                    self._set_status(FAILED, error)
                    return
                self._set_status(RETRYING, error)
                delay = min(self._max_backoff_s, self._backoff_s * 2**attempt)
                with self._cond:
                    if self._closing:
                        return
                    self._cond.wait(delay * (0.5 + random.random()))
                continue
            self.health.delivered += 1
            if self.health.status != OK and not self._sink_reported_failure:
                self._set_status(OK)  # a failure the sink reported clears only by its report
            return

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue and self._closing:
                    return
                event = self._queue.popleft()
            self._deliver(event)

    def close(self, timeout: float) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.health.last_error = "still busy at close; abandoned"
            return
        try:
            self.sink.close()
        except Exception as err:
            self.health.last_error = _scrubbed(err)


class TelemetryHub:
    """Fan events out: JSONL first (sync), then callbacks (sync), then sinks (background)."""

    def __init__(
        self,
        run_dir: Path | None = None,
        *,
        sinks: Iterable[Sink] = (),
        callbacks: Iterable[Callable[[Event], None]] = (),
        sources: dict[str, Any] | None = None,
        queue_size: int = 10_000,
        max_attempts: int = 5,
        backoff_s: float = 0.2,
        max_backoff_s: float = 10.0,
        stall_s: float = 30.0,
        poll_s: float = 1.0,
        heartbeat_s: float | None = None,
        device_metrics: bool = False,
    ) -> None:
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self._writer = JsonlWriter(self.run_dir / "events.jsonl") if self.run_dir else None
        self._callbacks = list(callbacks)
        self._last_step: int | None = None
        self._closed = False
        self._workers = [
            _SinkWorker(
                sink,
                queue_size=queue_size,
                max_attempts=max_attempts,
                backoff_s=backoff_s,
                max_backoff_s=max_backoff_s,
                stall_s=stall_s,
                on_health=self._health_changed,
            )
            for sink in sinks
        ]
        self._sources: dict[str, Any] = dict(sources or {})
        self._poll_s = poll_s
        self._heartbeat_s = heartbeat_s
        self._device_metrics = device_metrics
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        if self._sources or self._workers or heartbeat_s:
            self._poller = threading.Thread(
                target=self._poll_loop, name="telemetry-poll", daemon=True
            )
            self._poller.start()

    # ------------------------------------------------------------ emit

    def emit(self, event: Event) -> None:
        """Record one event. Fast: only the JSONL write and the local callbacks are synchronous."""
        if self._closed:
            return
        if "step" in event and isinstance(event["step"], int):
            self._last_step = event["step"]
        if self._writer is not None:
            self._writer(event)
        for callback in self._callbacks:
            try:
                callback(event)
            except Exception as err:  # a UI callback must never stop training
                log.warning("telemetry callback failed: %s", _scrubbed(err))
        for worker in self._workers:
            worker.put(event)

    __call__ = emit

    @property
    def last_step(self) -> int | None:
        return self._last_step

    # ------------------------------------------------------------ health

    def health(self) -> dict[str, dict[str, Any]]:
        """name -> {status ok|retrying|failed, last_error, delivered, dropped, queued, ...}."""
        for worker in self._workers:
            worker.check_stall()
        return {w.health.name: w.snapshot().as_dict() for w in self._workers}

    def sink(self, name: str) -> Sink | None:
        for worker in self._workers:
            if worker.health.name == name:
                return worker.sink
        return None

    def _health_changed(self, health: SinkHealth) -> None:
        """A ``sink`` event (telemetry/events.py) for each change: the status bar and the event
        log show it; written straight to events.jsonl and the callbacks, never to the sinks (a
        failing sink must not feed itself)."""
        event = make_event(
            "sink",
            name=health.name,
            status=health.status,
            error=health.last_error if health.status != OK else None,
            dropped=health.dropped,
        )
        if self._last_step is not None:
            event["step"] = self._last_step
        log.log(
            logging.INFO if health.status == OK else logging.WARNING,
            "telemetry sink %s: %s%s",
            health.name,
            health.status,
            f" ({health.last_error})" if event["error"] else "",
        )
        if self._writer is not None and not self._closed:
            self._writer(event)
        for callback in self._callbacks:
            with contextlib.suppress(Exception):
                callback(event)

    # ------------------------------------------------------------ sources / heartbeat

    def _poll_loop(self) -> None:
        next_beat = time.monotonic() + (self._heartbeat_s or 0)
        iterators: dict[str, Any] = {}
        while not self._stop.wait(
            self._poll_s if not self._heartbeat_s else min(self._poll_s, self._heartbeat_s)
        ):
            for worker in self._workers:
                worker.check_stall()
            for name, source in list(self._sources.items()):
                try:
                    for event in _poll_source(name, source, iterators):
                        self.emit(event)
                except BaseException as err:  # plugin code: SystemExit would end this thread
                    log.warning("telemetry source %s failed: %s", name, _scrubbed(err))
                    self._sources.pop(name, None)
                    self.emit(
                        make_event(
                            "log",
                            level="warning",
                            message=f"telemetry source {name} stopped: {_scrubbed(err)}",
                        )
                    )
            if self._heartbeat_s and time.monotonic() >= next_beat:
                next_beat = time.monotonic() + self._heartbeat_s
                self.emit(self._heartbeat())

    def _heartbeat(self) -> Event:
        event = make_event("heartbeat", step=self._last_step)
        if self._device_metrics:
            from nanochat_tui.telemetry.device import snapshot

            try:
                event["device"] = snapshot()
            except Exception as err:
                event["device_error"] = _scrubbed(err)
        return event

    # ------------------------------------------------------------ close

    def close(self, timeout: float = 10.0) -> None:
        """Flush sinks (bounded wait), stop polling, close the JSONL file."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=2.0)
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            worker.close(max(0.1, deadline - time.monotonic()))
        self._closed = True
        if self._writer is not None:
            self._writer.close()


def _poll_source(name: str, source: Any, iterators: dict[str, Iterator[Any]]) -> list[Event]:
    """A source is a callable returning event(s)/None, or an iterator yielding event(s)/None."""
    if isinstance(source, Iterator):
        item = next(source, None)
    elif callable(source):
        item = source()
    else:
        raise TypeError(f"source {name} is neither callable nor an iterator")
    if item is None:
        return []
    items = item if isinstance(item, list) else [item]
    out = []
    for ev in items:
        if isinstance(ev, dict) and "type" in ev:
            ev.setdefault("time", time.time())
            ev.setdefault("source", name)
            out.append(ev)
    return out


def load_sources(run_dir: Path, config: Any) -> dict[str, Any]:
    """Instantiate every registered telemetry source: ``factory(run_dir, config)``."""
    from nanochat_tui.plugin_host import get_registry
    from nanochat_tui.registry import resolve

    out: dict[str, Any] = {}
    for name, entry in get_registry().sources.items():
        try:
            out[name] = resolve(entry.ref)(run_dir, config)
        except BaseException as err:  # a plugin's SystemExit must not end the run
            if type(err) is KeyboardInterrupt:
                raise
            log.warning("telemetry source %s could not start: %s", name, _scrubbed(err))
    return out
