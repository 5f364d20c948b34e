"""The event vocabulary the engine emits. Events are plain JSON-serialisable dicts.

Every event has ``type`` (one of EVENT_TYPES), ``time`` (unix seconds) and, once training has
begun, ``step``. ``run_dir/events.jsonl`` holds one event per line and is the source of truth for
every UI: anything that can read it can rebuild the panels.

Fields by type (all optional beyond the common ones unless noted):
  run_start   run_name, run_dir, stage (the task: "pretrain", ...), config (dict), num_params,
              flops_per_token, num_iterations, device (str), device_count, devices_used (what MFU
              is computed over), peak_flops, resumed_from_step, tokens_per_step, plus the task's
              own fields (pretrain: train_tokens, val_tokens, unigram_bpb; every stage: dataset
              {source, rows, hash}); with run.init_from, initialised_from {path, step}
  step        step (required), loss, lr_multiplier, lr (matrix lr after schedule), tokens,
              tokens_per_s, mfu, step_time, data_wait, compute_time, host_time, grad_norm, eta_s,
              epoch, device_memory_bytes, aux (dict name -> float: the task's auxiliary metrics).
              Emitted one step late: the loop reads step n's values after dispatching step n+1
  eval        step, the task's evaluation fields (pretrain: val_bpb, val_loss, unigram_bpb)
  sample      step, samples (list of {prompt, completion})
  checkpoint  step, path, reason ("interval" | "manual" | "final" | "stop"): emitted when the
              (asynchronous) save has been committed
  patch       step, changes (dict dotted key -> value), ok (bool), message
  log         level ("info" | "warning" | "error"), message
  error       message, remediation, last_checkpoint (path or null),
              kind ("nan" | "diverged" | "oom" | "disk_full" | "crash")
  run_end     step, status ("finished" | "stopped" | "failed"), final_val_bpb
  heartbeat   step (emitted by detached runs so a UI knows the process is alive)
  phase       phase (one of PHASES), elapsed_s (seconds since the run started), detail (str):
              start-up progress before the first step, then "training"
  sink        name, status ("ok" | "retrying" | "failed"), error (scrubbed str or null),
              dropped (int): a telemetry sink's health changed
Plugins may emit their own types; consumers ignore types they do not know.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

Event = dict[str, Any]
EventCallback = Callable[[Event], None]

EVENT_TYPES = (
    "run_start",
    "step",
    "eval",
    "sample",
    "checkpoint",
    "patch",
    "log",
    "error",
    "run_end",
    "heartbeat",
    "phase",
    "sink",
)

# Start-up phases in order, as "phase" events report them (the Live pane shows the current one).
PHASES = ("tokenizer", "data", "model", "compile", "first_step", "training")


def make_event(type_: str, **fields: Any) -> Event:
    """An event dict with the common fields filled in."""
    return {"type": type_, "time": time.time(), **fields}
