"""OpenTelemetry sink: a "run" span with child spans per step / eval / checkpoint, and gauges for
loss, tokens/s and MFU. OTLP/HTTP when an endpoint is configured (config or
OTEL_EXPORTER_OTLP_ENDPOINT), else in-memory exporters (tests, or just to inspect in-process).
Uses its own providers — never the process-global ones — so two runs never share state."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from nanochat_tui.telemetry.events import Event


def otel_wanted(config: Any) -> bool:
    return bool(config.telemetry.otel.enabled or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def _reporting(exporter_cls: type, on_result: Any) -> type:
    """A subclass of an OTLP exporter that tells ``on_result(what, ok)`` how each export went."""

    class Reporting(exporter_cls):  # type: ignore[misc, valid-type]
        def export(self, *args: Any, **kwargs: Any) -> Any:
            try:
                result = super().export(*args, **kwargs)
            except Exception:
                on_result(self._what, False)
                raise
            on_result(self._what, getattr(result, "name", str(result)) == "SUCCESS")
            return result

    Reporting._what = "metric" if "Metric" in exporter_cls.__name__ else "span"
    Reporting.__name__ = f"Reporting{exporter_cls.__name__}"
    return Reporting


def _ns(seconds: float) -> int:
    return int(seconds * 1e9)


class OtelSink:
    name = "otel"

    def __init__(
        self,
        config: Any,
        run_name: str | None = None,
        *,
        span_exporter: Any = None,
        metric_reader: Any = None,
    ) -> None:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        otel = config.telemetry.otel
        self._report: Any = None
        self.run_name = run_name or config.run.name or "run"
        self.endpoint = otel.endpoint or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None
        resource = Resource.create(
            {"service.name": otel.service_name, "nanochat.run": self.run_name}
        )
        if span_exporter is None and metric_reader is None and self.endpoint:
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

            base = self.endpoint.rstrip("/")
            span_exporter = _reporting(OTLPSpanExporter, self._exported)(
                endpoint=f"{base}/v1/traces", timeout=5
            )
            metric_reader = PeriodicExportingMetricReader(
                _reporting(OTLPMetricExporter, self._exported)(
                    endpoint=f"{base}/v1/metrics", timeout=5
                ),
                export_interval_millis=10_000,
            )
            processor = BatchSpanProcessor(span_exporter)
        else:
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

            span_exporter = span_exporter or InMemorySpanExporter()
            metric_reader = metric_reader or InMemoryMetricReader()
            processor = SimpleSpanProcessor(span_exporter)
        self.span_exporter = span_exporter
        self.metric_reader = metric_reader
        self._tracer_provider = TracerProvider(resource=resource)
        self._tracer_provider.add_span_processor(processor)
        self._meter_provider = MeterProvider(resource=resource, metric_readers=[metric_reader])
        self.tracer = self._tracer_provider.get_tracer("nanochat_tui")
        meter = self._meter_provider.get_meter("nanochat_tui")
        self._gauges = {
            "loss": meter.create_gauge("nanochat.train.loss", description="training loss"),
            "tokens_per_s": meter.create_gauge("nanochat.train.tokens_per_s", unit="tokens/s"),
            "mfu": meter.create_gauge("nanochat.train.mfu", description="model FLOPs utilisation"),
            "val_bpb": meter.create_gauge(
                "nanochat.eval.val_bpb", description="validation bits/byte"
            ),
        }
        self._run_span: Any = None
        self._closed = False

    def bind_health(self, report: Any) -> None:
        """The hub's health channel: exports run on OTel's own threads, so their failures are
        reported here rather than raised from ``handle``."""
        self._report = report

    def _exported(self, what: str, ok: bool) -> None:
        if self._report is None:
            return
        if ok:
            self._report("ok")
        else:
            self._report("failed", f"{what} export to {self.endpoint} failed (see the app log)")

    def _context(self) -> Any:
        from opentelemetry import trace

        return trace.set_span_in_context(self._run_span) if self._run_span is not None else None

    def _span(self, name: str, event: Event, duration: float | None, attrs: dict[str, Any]) -> None:
        end = float(event.get("time") or 0) or None
        start = end - duration if end is not None and duration else end
        span = self.tracer.start_span(
            name,
            context=self._context(),
            start_time=_ns(start) if start is not None else None,
            attributes={k: v for k, v in attrs.items() if isinstance(v, bool | int | float | str)},
        )
        span.end(end_time=_ns(end) if end is not None else None)

    def handle(self, event: Event) -> None:
        if self._closed:
            return
        kind = event.get("type")
        step = event.get("step")
        attrs = {"run": self.run_name}
        if step is not None:
            attrs["step"] = step
        if kind == "run_start":
            self._run_span = self.tracer.start_span(
                "run",
                start_time=_ns(event["time"]) if event.get("time") else None,
                attributes={
                    "run": self.run_name,
                    "num_params": int(event.get("num_params") or 0),
                    "device": str(event.get("device") or ""),
                },
            )
        elif kind == "step":
            for key in ("loss", "tokens_per_s", "mfu", "grad_norm", "lr_multiplier"):
                if event.get(key) is not None:
                    attrs[key] = float(event[key])
            self._span("train.step", event, event.get("step_time"), attrs)
            for key in ("loss", "tokens_per_s", "mfu"):
                if event.get(key) is not None:
                    self._gauges[key].set(float(event[key]), {"run": self.run_name})
        elif kind == "eval":
            for key in ("val_bpb", "val_loss"):
                if event.get(key) is not None:
                    attrs[key] = float(event[key])
            self._span("eval", event, event.get("eval_time"), attrs)
            if event.get("val_bpb") is not None:
                self._gauges["val_bpb"].set(float(event["val_bpb"]), {"run": self.run_name})
        elif kind == "checkpoint":
            attrs.update(reason=str(event.get("reason")), path=str(event.get("path")))
            self._span("checkpoint", event, event.get("save_time"), attrs)
        elif kind == "patch":
            attrs.update(ok=bool(event.get("ok")), changes=str(event.get("changes")))
            self._span("patch", event, None, attrs)
        elif kind == "run_end" and self._run_span is not None:
            self._run_span.set_attribute("status", str(event.get("status")))
            self._run_span.end(end_time=_ns(event["time"]) if event.get("time") else None)
            self._run_span = None

    def finished_spans(self) -> list[Any]:
        """Spans exported so far (in-memory exporter only)."""
        getter = getattr(self.span_exporter, "get_finished_spans", None)
        return list(getter()) if getter else []

    def close(self) -> None:
        if self._closed:
            return
        if self._run_span is not None:
            self._run_span.end()
            self._run_span = None
        self._tracer_provider.force_flush(5_000)
        self._tracer_provider.shutdown()
        with contextlib.suppress(Exception):  # a final export, then no atexit export later
            self._meter_provider.shutdown(timeout_millis=5_000)
        self._closed = True
