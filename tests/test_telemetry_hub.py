"""Telemetry hub: JSONL first, sinks in the background, slow/failing sinks never slow training."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from nanochat_tui.config.schema import Config
from nanochat_tui.telemetry.events import make_event
from nanochat_tui.telemetry.hub import TelemetryHub
from nanochat_tui.telemetry.jsonl import read_events


class SleepySink:
    name = "sleepy"

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.seen = 0

    def handle(self, event):
        time.sleep(self.delay)
        self.seen += 1

    def close(self):
        pass


class FailingSink:
    name = "broken"

    def __init__(self, fail_times: int = 10**9) -> None:
        self.calls = 0
        self.fail_times = fail_times
        self.got: list[dict] = []

    def handle(self, event):
        self.calls += 1
        if self.calls <= self.fail_times:
            raise ConnectionError("endpoint down (token=hf_abcdefghijklmnopqrstuvwxyz)")
        self.got.append(event)

    def close(self):
        pass


class HangingSink:
    name = "hung"

    def __init__(self) -> None:
        self.release = threading.Event()

    def handle(self, event):
        self.release.wait(30)

    def close(self):
        pass


def step_events(n):
    return [make_event("step", step=i, loss=1.0 / (i + 1)) for i in range(n)]


def test_jsonl_written_synchronously_and_in_order(tmp_path):
    hub = TelemetryHub(tmp_path)
    for ev in step_events(50):
        hub.emit(ev)
    assert [e["step"] for e in read_events(tmp_path / "events.jsonl")] == list(range(50))
    hub.close()


def test_slow_sink_does_not_slow_emit(tmp_path):
    sink = SleepySink(0.05)
    hub = TelemetryHub(tmp_path, sinks=[sink], queue_size=100)
    t0 = time.perf_counter()
    for ev in step_events(1000):
        hub.emit(ev)
    elapsed = time.perf_counter() - t0
    # Waiting on the sink would take 1000 x 0.05 s = 50 s; the bound is loose for busy CI cores.
    assert elapsed < 5, f"emit of 1000 events took {elapsed:.3f}s"
    health = hub.health()["sleepy"]
    assert health["dropped"] >= 800  # bounded queue: the oldest were dropped and counted
    assert len(read_events(tmp_path / "events.jsonl")) == 1000  # JSONL never drops
    hub.close(timeout=0.2)


def test_hanging_sink_marked_failed_and_emit_stays_fast(tmp_path):
    sink = HangingSink()
    hub = TelemetryHub(tmp_path, sinks=[sink], stall_s=0.2, poll_s=0.05)
    t0 = time.perf_counter()
    for ev in step_events(1000):
        hub.emit(ev)
    assert time.perf_counter() - t0 < 5  # waiting on the hung sink would take 30 s per event
    deadline = time.monotonic() + 10
    while hub.health()["hung"]["status"] != "failed" and time.monotonic() < deadline:
        time.sleep(0.02)
    health = hub.health()["hung"]
    assert health["status"] == "failed"
    assert "no response" in health["last_error"]
    sink.release.set()
    hub.close(timeout=1)


def test_failing_sink_retries_then_fails_with_scrubbed_error(tmp_path):
    sink = FailingSink()
    hub = TelemetryHub(tmp_path, sinks=[sink], max_attempts=3, backoff_s=0.01, max_backoff_s=0.02)
    hub.emit(make_event("step", step=1, loss=2.0))
    deadline = time.time() + 5
    statuses = set()
    while time.time() < deadline:
        status = hub.health()["broken"]["status"]
        statuses.add(status)
        if status == "failed":
            break
        time.sleep(0.005)
    health = hub.health()["broken"]
    assert health["status"] == "failed"
    assert "ConnectionError" in health["last_error"]
    assert "hf_abc" not in health["last_error"]
    assert sink.calls == 3
    hub.close()
    sinks = [e for e in read_events(tmp_path / "events.jsonl") if e["type"] == "sink"]
    assert [(e["name"], e["status"]) for e in sinks] == [
        ("broken", "retrying"),
        ("broken", "failed"),
    ]
    assert all("hf_abc" not in e["error"] and "ConnectionError" in e["error"] for e in sinks)


def test_sink_recovers_after_transient_failures(tmp_path):
    sink = FailingSink(fail_times=2)
    hub = TelemetryHub(tmp_path, sinks=[sink], max_attempts=5, backoff_s=0.01)
    hub.emit(make_event("step", step=3, loss=1.0))
    deadline = time.time() + 5
    while time.time() < deadline and not sink.got:
        time.sleep(0.01)
    assert sink.got and sink.got[0]["step"] == 3
    assert hub.health()["broken"]["status"] == "ok"
    hub.close()
    events = read_events(tmp_path / "events.jsonl")
    assert [e["status"] for e in events if e["type"] == "sink"] == ["retrying", "ok"]
    assert [e["error"] for e in events if e["type"] == "sink"][1] is None


def test_callback_errors_are_swallowed_and_sources_polled(tmp_path):
    seen = []

    def bad_callback(event):
        raise RuntimeError("ui gone")

    counter = iter(range(1000))

    def source():
        return make_event("moe_heat", value=next(counter))

    hub = TelemetryHub(
        tmp_path,
        callbacks=[bad_callback, seen.append],
        sources={"moe": source},
        poll_s=0.02,
        heartbeat_s=0.05,
        device_metrics=True,
    )
    hub.emit(make_event("step", step=7))
    time.sleep(0.3)
    hub.close()
    events = read_events(tmp_path / "events.jsonl")
    types = {e["type"] for e in events}
    assert {"step", "moe_heat", "heartbeat"} <= types
    beat = next(e for e in events if e["type"] == "heartbeat")
    assert beat["step"] == 7
    assert beat["device"]["host"]["ram_total_bytes"] > 0
    assert any(e["type"] == "moe_heat" and e["source"] == "moe" for e in seen)


def test_otel_spans_and_metrics_in_memory():
    from nanochat_tui.telemetry.otel_sink import OtelSink

    config = Config().model_copy(deep=True)
    config.telemetry.otel.enabled = True
    config.run.name = "otel-run"
    sink = OtelSink(config)
    hub = TelemetryHub(None, sinks=[sink])
    t = time.time()
    hub.emit({"type": "run_start", "time": t, "num_params": 10})
    for i in range(3):
        hub.emit(
            {
                "type": "step",
                "time": t + i + 1,
                "step": i,
                "loss": 3.0 - i,
                "tokens_per_s": 1e3,
                "mfu": 0.1,
                "step_time": 0.5,
            }
        )
    hub.emit({"type": "eval", "time": t + 5, "step": 2, "val_bpb": 2.5})
    hub.emit({"type": "checkpoint", "time": t + 6, "step": 2, "reason": "manual", "path": "/x"})
    hub.emit({"type": "run_end", "time": t + 7, "step": 2, "status": "finished"})
    hub.close()
    spans = sink.finished_spans()
    names = [s.name for s in spans]
    assert (
        names.count("train.step") == 3
        and "eval" in names
        and "checkpoint" in names
        and "run" in names
    )
    run_span = next(s for s in spans if s.name == "run")
    step_span = next(s for s in spans if s.name == "train.step")
    assert step_span.parent.span_id == run_span.context.span_id
    assert step_span.attributes["loss"] == 3.0
    assert (step_span.end_time - step_span.start_time) == pytest.approx(0.5e9, rel=1e-3)
    metrics = sink.metric_reader.get_metrics_data()
    names = {
        m.name for rm in metrics.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
    }
    assert {"nanochat.train.loss", "nanochat.train.tokens_per_s", "nanochat.train.mfu"} <= names


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_refused_otel_endpoint_becomes_a_sink_health_event(tmp_path):
    """Regression (issue 10): a refused OTLP endpoint gave 0 health events (the exporter's failures
    happen on OTel's own thread and were only logged)."""
    from nanochat_tui.config import load_config
    from nanochat_tui.telemetry.otel_sink import OtelSink

    endpoint = f"http://127.0.0.1:{_closed_port()}"
    cfg = load_config(
        "tiny", ["telemetry.otel.enabled=true", f"telemetry.otel.endpoint={endpoint}"]
    )
    hub = TelemetryHub(tmp_path, sinks=[OtelSink(cfg, "r")])
    hub.emit(make_event("run_start"))
    hub.emit(make_event("step", step=1, loss=1.0))
    hub.emit(make_event("run_end", step=1, status="finished"))
    hub.close()  # flushes the batch exporter: the export is refused
    sinks = [e for e in read_events(tmp_path / "events.jsonl") if e["type"] == "sink"]
    assert sinks and sinks[-1]["name"] == "otel" and sinks[-1]["status"] == "failed"
    assert endpoint in sinks[-1]["error"]


def test_library_logging_goes_to_the_app_log_not_the_terminal(tmp_path):
    """Regression (issue 10): 57 raw `WARNING:opentelemetry...` lines reached the terminal."""
    import os
    import subprocess
    import sys

    code = (
        "import logging, warnings\n"
        "from nanochat_tui import logging_setup\n"
        "path = logging_setup.setup_logging()\n"
        "logging.getLogger('opentelemetry.exporter.otlp').warning('export refused')\n"
        "logging.getLogger('urllib3.connectionpool').error('connection reset')\n"
        "warnings.warn('a library warning')\n"
        "print(path)\n"
    )
    env = {**os.environ, "NANOCHAT_TUI_HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0 and done.stderr == ""
    log_text = Path(done.stdout.strip()).read_text(encoding="utf-8")
    for line in ("export refused", "connection reset", "a library warning"):
        assert line in log_text


def test_a_failure_the_sink_reports_is_not_cleared_by_deliveries(tmp_path):
    """OTel's exports fail on their own thread while handle() keeps succeeding: the status must
    stay failed until the sink reports an export that worked."""

    class Reporting:
        name = "reporting"

        def bind_health(self, report):
            self.report = report

        def handle(self, event):
            pass

        def close(self):
            pass

    sink = Reporting()
    hub = TelemetryHub(tmp_path, sinks=[sink])
    sink.report("failed", "export refused")
    for step in range(5):
        hub.emit(make_event("step", step=step, loss=1.0))
    time.sleep(0.2)
    assert hub.health()["reporting"]["status"] == "failed"
    sink.report("ok")
    assert hub.health()["reporting"]["status"] == "ok"
    hub.close()
    statuses = [e["status"] for e in read_events(tmp_path / "events.jsonl") if e["type"] == "sink"]
    assert statuses == ["failed", "ok"]


def test_a_half_built_wandb_import_is_dropped_so_the_next_try_works(monkeypatch) -> None:
    """A first import that failed half-way left a package without its attributes in sys.modules
    (CI once hit this): the sink's import fails once, clears it, and the retry gets real wandb."""
    import sys
    import types

    from nanochat_tui.telemetry.wandb_sink import import_wandb

    real = {n: m for n, m in sys.modules.items() if n == "wandb" or n.startswith("wandb.")}
    for name in real:
        monkeypatch.delitem(sys.modules, name)
    half = types.ModuleType("wandb")
    monkeypatch.setitem(sys.modules, "wandb", half)
    monkeypatch.setitem(sys.modules, "wandb.errors", types.ModuleType("wandb.errors"))
    with pytest.raises(AttributeError):
        import_wandb()
    assert "wandb" not in sys.modules and "wandb.errors" not in sys.modules
    wandb = import_wandb()
    assert wandb is not half and callable(wandb.init) and wandb.Settings is not None
    for name in [n for n in sys.modules if n == "wandb" or n.startswith("wandb.")]:
        monkeypatch.delitem(sys.modules, name)  # put back what the process had before
    for name, module in real.items():
        monkeypatch.setitem(sys.modules, name, module)
