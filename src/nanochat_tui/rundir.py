"""The run directory: a self-describing folder that anything can read to rebuild a run's UI.

    RUN_DIR/
      config.yaml        resolved config of the run (YAML)
      events.jsonl       one JSON event per line (telemetry/events.py) — the source of truth
      tokenizer.json     the HF tokenizer the run trained/used
      run.json           process record: pid, mode (thread|detached), host, started, status
      checkpoints/       orbax CheckpointManager root: <step>/state (pytree), <step>/meta (JSON);
                         .trash/ holds rotated-out steps until they are removed (a rename is atomic)
      pins.json          {"pinned": [steps]}: checkpoints kept out of keep_checkpoints rotation
      transcripts/       chat/eval transcripts, one JSONL file per session
      crash/             crash dumps (secrets scrubbed)
      control.sock       detached runs: owner-only (0600) unix socket accepting control commands
      wandb/             W&B offline run directories when telemetry.wandb is on

Pure Python, no JAX: the TUI lists runs and checkpoints with this before JAX is imported. The
one atomic writer lives here too (``write_atomic`` / ``atomic_path``), on the ground floor where
every layer may import it.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
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
PINS = "pins.json"
TRASH = ".trash"  # orbax todelete_subdir: rotated-out steps are renamed here, then removed
META_ITEM = "meta"  # orbax item name of the per-step JSON metadata
STATE_ITEM = "state"  # orbax item name of the model/optimizer pytree


@dataclass
class CheckpointInfo:
    """What the checkpoints screen and compatibility checks need, read from the JSON alone."""

    path: Path  # the step directory
    step: int
    meta: dict[str, Any] = field(default_factory=dict)
    pinned: bool = False

    @property
    def run_dir(self) -> Path:
        return self.path.parent.parent

    @property
    def stage(self) -> str:
        return str(self.meta.get("stage", "pretrain"))

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


def _step_dirs(run_dir: Path) -> list[Path]:
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    return [p for p in root.iterdir() if p.is_dir() and p.name.isdigit()]


def list_checkpoints(run_dir: Path) -> list[CheckpointInfo]:
    """Finished checkpoints of a run, oldest first (orbax temp dirs and unreadable steps skipped;
    ``damaged_checkpoints`` names the unreadable ones)."""
    pins = read_pins(run_dir)
    found = []
    for step_dir in _step_dirs(run_dir):
        meta = read_meta(step_dir)
        if meta is not None:
            step = int(step_dir.name)
            found.append(CheckpointInfo(step_dir, step, meta, pinned=step in pins))
    return sorted(found, key=lambda c: c.step)


def damaged_checkpoints(run_dir: Path) -> list[Path]:
    """Step directories whose metadata is missing or unreadable (truncated, hand-edited), oldest
    first. Orbax writes a step into a temporary directory and renames it when complete, so these
    are damaged after the fact, not saves in progress."""
    bad = [p for p in _step_dirs(run_dir) if read_meta(p) is None]
    return sorted(bad, key=lambda p: int(p.name))


def read_pins(run_dir: Path) -> set[int]:
    """Steps pinned in ``pins.json`` (kept out of rotation); empty when absent or unreadable."""
    try:
        data = json.loads((Path(run_dir) / PINS).read_text(encoding="utf-8"))
        return {int(s) for s in data.get("pinned", [])}
    except (OSError, ValueError, TypeError, AttributeError):
        return set()


def set_pinned(run_dir: Path, step: int, pinned: bool) -> set[int]:
    """Pin or unpin one step (atomic rewrite of ``pins.json``); returns the pinned steps."""
    pins = read_pins(run_dir)
    pins = pins | {int(step)} if pinned else pins - {int(step)}
    write_atomic(Path(run_dir) / PINS, json.dumps({"pinned": sorted(pins)}))
    return pins


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


# ---------------------------------------------------------------- the one atomic writer


def _create_temp(path: Path, private: bool) -> tuple[int, Path]:
    """A new, empty file next to ``path``: mode 0666 less the umask (what ``open`` gives a new
    file), or exactly 0600 when ``private``. ``tempfile.mkstemp`` would make every file 0600."""
    for _ in range(100):
        tmp = path.with_name(f".{path.name}.{os.urandom(4).hex()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o666)
        except FileExistsError:
            continue
        if private:
            os.chmod(tmp, 0o600)  # exactly 0600, whatever the umask
        return fd, tmp
    raise FileExistsError(f"no free temporary name next to {path}")


@contextmanager
def atomic_path(path: Path, *, private: bool = False) -> Iterator[Path]:
    """A temporary file next to ``path`` for a writer that wants a path (safetensors, torch.save,
    onnx): when the block succeeds it is fsynced and renamed onto ``path``, so a crash never
    leaves a half-written file; when it fails it is removed. The file's mode respects the umask
    (0644 under the usual 022), or is 0600 when ``private`` (secrets)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path, private)
    created = stat.S_IMODE(os.fstat(fd).st_mode)
    os.close(fd)
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            if stat.S_IMODE(os.fstat(fd).st_mode) != created:
                os.chmod(tmp, created)  # safetensors re-creates the file 0600
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: str | bytes, *, private: bool = False) -> None:
    """Write ``data`` (text as UTF-8) to ``path`` atomically: temp file, fsync, rename. Modes as
    ``atomic_path``."""
    with atomic_path(path, private=private) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
