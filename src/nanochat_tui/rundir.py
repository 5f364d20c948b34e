"""The run directory: a self-describing folder that anything can read to rebuild a run's UI.

    RUN_DIR/
      config.yaml        resolved config of the run (YAML)
      events.jsonl       one JSON event per line (telemetry/events.py) — the source of truth
      tokenizer.json     the HF tokenizer the run trained/used
      run.json           process record: pid, mode (thread|detached), host, started, status
      checkpoints/       orbax CheckpointManager root: <step>/state (pytree), <step>/meta (JSON)
      transcripts/       chat/eval transcripts, one JSONL file per session
      crash/             crash dumps (secrets scrubbed)
      control.sock       detached runs: owner-only (0600) unix socket accepting control commands
      wandb/             W&B offline run directories when telemetry.wandb is on

Pure Python, no JAX: the TUI lists runs and checkpoints with this before JAX is imported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CONFIG = "config.yaml"
EVENTS = "events.jsonl"
TOKENIZER = "tokenizer.json"
RUN_RECORD = "run.json"
CHECKPOINTS = "checkpoints"
TRANSCRIPTS = "transcripts"
CRASH = "crash"
CONTROL_SOCKET = "control.sock"
META_ITEM = "meta"  # orbax item name of the per-step JSON metadata
STATE_ITEM = "state"  # orbax item name of the model/optimizer pytree


@dataclass
class CheckpointInfo:
    """What the checkpoints screen and compatibility checks need, read from the JSON alone."""

    path: Path  # the step directory
    step: int
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return self.path.parent.parent

    @property
    def stage(self) -> str:
        return str(self.meta.get("stage", "base"))

    @property
    def val_bpb(self) -> float | None:
        return self.meta.get("val_bpb")

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())


def meta_path(step_dir: Path) -> Path:
    """Where orbax's JsonSave puts the metadata item of one step."""
    return step_dir / META_ITEM / "metadata"


def read_meta(step_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads(meta_path(step_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def list_checkpoints(run_dir: Path) -> list[CheckpointInfo]:
    """Finished checkpoints of a run, oldest first (orbax temp dirs and unreadable steps skipped)."""
    root = Path(run_dir) / CHECKPOINTS
    found = []
    if root.is_dir():
        for step_dir in root.iterdir():
            if step_dir.is_dir() and step_dir.name.isdigit():
                meta = read_meta(step_dir)
                if meta is not None:
                    found.append(CheckpointInfo(step_dir, int(step_dir.name), meta))
    return sorted(found, key=lambda c: c.step)


def latest_checkpoint(run_dir: Path) -> CheckpointInfo | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def is_run_dir(path: Path) -> bool:
    return (Path(path) / CONFIG).is_file() or (Path(path) / EVENTS).is_file()


def list_run_dirs(parent: Path) -> list[Path]:
    """Run directories directly under ``parent``, newest first."""
    if not Path(parent).is_dir():
        return []
    runs = [p for p in Path(parent).iterdir() if p.is_dir() and is_run_dir(p)]
    return sorted(runs, key=lambda p: p.stat().st_mtime, reverse=True)
