"""An in-process (thread) run with W&B (offline) and OpenTelemetry (in-memory) sinks wired.

Real training on a tiny config; steered through the RunHandle (patch, checkpoint, stop).
"""

from __future__ import annotations

import pytest

from helpers import tiny
from helpers import wait_for_event as wait_for
from nanochat_tui.config import Config, ConfigError, apply_overrides
from nanochat_tui.errors import UserError
from nanochat_tui.orchestrator.runner import ThreadRun, attach, start_run
from nanochat_tui.orchestrator.summaries import list_runs
from nanochat_tui.telemetry.jsonl import read_events

TINY = tiny({"train.num_iterations": 100_000, "train.eval_tokens": 512})


@pytest.fixture
def thread_run(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")  # no network at test time
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    config = apply_overrides(
        Config(),
        {
            **TINY,
            "run.runs_dir": str(tmp_path / "runs"),
            "telemetry.wandb.enabled": True,
            "telemetry.otel.enabled": True,
        },
    )
    handle = start_run(config, name="wb-run", mode="thread")
    yield handle
    if handle.is_alive():
        handle.inbox.stop()
        handle.join(60)


def test_thread_run_wandb_offline_and_otel(thread_run):
    handle = thread_run
    assert isinstance(handle, ThreadRun) and handle.mode == "thread"
    events = handle.events_path
    wait_for(events, lambda e: e["type"] == "step" and e["step"] >= 2)
    assert handle.status() == "running" and attach(handle.run_dir) is handle

    with pytest.raises(ConfigError):
        handle.patch({"train.device_batch_size": 8})
    handle.patch({"optim.lr_multiplier": 2.0})
    patch = wait_for(events, lambda e: e["type"] == "patch")
    assert patch["ok"] and patch["changes"] == {"optim.lr_multiplier": 2.0}
    handle.checkpoint_now()
    wait_for(events, lambda e: e["type"] == "checkpoint" and e["reason"] == "manual")
    handle.stop()
    assert handle.join(60)
    assert handle.result.status == "stopped"
    end = [e for e in read_events(events) if e["type"] == "run_end"]
    assert [e["status"] for e in end] == ["stopped"]
    (summary,) = list_runs(handle.run_dir.parent)
    assert (summary.name, summary.status, summary.mode) == ("wb-run", "stopped", "thread")
    with pytest.raises(UserError, match="not running"):
        handle.stop()

    # W&B: a syncable offline run directory inside the run dir, named after the run, healthy.
    health = handle.hub.health()
    assert health["wandb"]["status"] == "ok", health
    assert health["otel"]["status"] == "ok", health
    offline = sorted((handle.run_dir / "wandb").glob("offline-run-*"))
    assert len(offline) == 1
    assert list(offline[0].glob("*.wandb"))
    assert handle.hub.sink("wandb").mode == "offline"
    assert handle.hub.sink("wandb").run_name == "wb-run"

    # OTel: run span with step/checkpoint children, exported to the in-memory exporter.
    spans = handle.hub.sink("otel").finished_spans()
    names = [s.name for s in spans]
    assert "run" in names and "checkpoint" in names and "patch" in names
    assert names.count("train.step") >= 2
    run_span = next(s for s in spans if s.name == "run")
    assert run_span.attributes["status"] == "stopped"
    step_span = next(s for s in spans if s.name == "train.step")
    assert step_span.parent.span_id == run_span.context.span_id
    assert step_span.attributes["loss"] > 0
