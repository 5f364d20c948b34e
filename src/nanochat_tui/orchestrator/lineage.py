"""A run's lineage: the chain of runs it descends from (base → SFT → DPO), read from files only.

Each run names the checkpoint it started from in ``config.yaml`` (``run.init_from``: a run dir,
its ``checkpoints/`` folder or a step dir); following those links to a run without one gives the
chain, root first. Each node says what the run was: stage, the step of its parent it started
from, project and SOUL version, and the dataset it trained on (``source``, rows and a short
content hash, recorded in its ``run_start`` event). Nothing here raises on bad input: a missing,
moved or unreadable parent, a cycle or an over-long chain becomes a node with a ``problem``.

Pure Python (no JAX, no Textual): the Runs pane and ``nanochat-tui runs --lineage`` use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanochat_tui import paths, rundir
from nanochat_tui.orchestrator.records import read_record
from nanochat_tui.telemetry.jsonl import parse_line

MAX_DEPTH = 32
_EVENTS_SCAN_BYTES = 8 * 1024 * 1024  # run_start comes early; never read a whole huge log


@dataclass(frozen=True)
class Dataset:
    """What a run trained on: ``source`` (a path or a built-in set), rows and a content hash."""

    source: str
    rows: int | None = None
    hash: str | None = None

    def label(self) -> str:
        """``prefs.jsonl (790 rows, #1a2b3c4d5e6f)``; old runs: ``prefs.jsonl (not recorded)``."""
        is_path = "/" in self.source and not any(c.isspace() for c in self.source)
        name = Path(self.source).name if is_path else self.source
        if self.rows is None and self.hash is None:
            return f"{name} (rows and hash not recorded)"
        rows = "?" if self.rows is None else f"{self.rows:,}"
        return f"{name} ({rows} rows, #{self.hash or '?'})"


@dataclass
class Node:
    """One run of a lineage; ``problem`` set when the run could not be read as a run."""

    name: str
    path: Path | None = None  # the run directory
    stage: str | None = None
    from_step: int | None = None  # the parent's checkpoint step this run started from
    init_from: str | None = None  # run.init_from as written in config.yaml
    parent: str | None = None  # the parent run's name, once resolved
    project: str | None = None
    soul_version: int | None = None
    dataset: Dataset | None = None
    notes: list[str] = field(default_factory=list)  # "imported from ...", "outside the runs dir"
    problem: str | None = None  # "parent missing: PATH", "cycle: ...", ...

    def label(self) -> str:
        """Short form for one line: ``name (stage)`` or the problem."""
        if self.problem:
            return f"⚠ {self.problem}"
        return f"{self.name} ({self.stage or '?'})"

    def details(self) -> list[str]:
        """``key: value`` lines for this node (the CLI and the Lineage view)."""
        if self.problem:
            return [self.problem]
        out = [f"stage: {self.stage or 'unknown'}"]
        if self.init_from:
            step = "latest at its start" if self.from_step is None else f"step {self.from_step}"
            out.append(f"started from: {step} of {self.parent or self.init_from}")
        if self.soul_version is not None:
            out.append(f"SOUL: {self.project or 'default'} v{self.soul_version}")
        if self.dataset is not None:
            out.append(f"dataset: {self.dataset.label()}")
        out.extend(self.notes)
        return out


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    from nanochat_tui.config import safe_yaml

    try:
        data = safe_yaml.parse(safe_yaml.read_text(path))
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _first_run_start(run_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """The first ``run_start`` event of a run (``{}`` when none) and the log messages before it."""
    logs: list[str] = []
    read = 0
    try:
        with open(run_dir / rundir.EVENTS, "rb") as fh:
            for line in fh:
                read += len(line)
                if read > _EVENTS_SCAN_BYTES:
                    break
                if b'"run_start"' not in line and b'"log"' not in line:
                    continue
                event = parse_line(line) if line.endswith(b"\n") else None
                if event is None:
                    continue
                if event.get("type") == "run_start":
                    return event, logs
                if event.get("type") == "log" and isinstance(event.get("message"), str):
                    logs.append(event["message"])
    except OSError:
        pass
    return {}, logs


def parent_location(init_from: str) -> tuple[Path, int | None]:
    """The run directory ``init_from`` names and the step when it names a step directory."""
    path = Path(init_from).expanduser()
    if path.name.isdigit() and path.parent.name == rundir.CHECKPOINTS:
        return path.parent.parent, int(path.name)
    if path.name == rundir.CHECKPOINTS:
        return path.parent, None
    return path, None


def _int(value: Any) -> int | None:
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None


def read_node(run_dir: Path, runs_dir: Path | None = None) -> Node:
    """What one run directory says about itself and the checkpoint it started from."""
    run_dir = Path(run_dir)
    record = read_record(run_dir)
    config = _read_yaml(run_dir / rundir.CONFIG)
    start, logs = _first_run_start(run_dir)
    try:
        latest = rundir.latest_checkpoint(run_dir)
    except OSError:  # an unreadable checkpoints/ folder
        latest = None
    meta = latest.meta if latest is not None and isinstance(latest.meta, dict) else {}
    if not config and isinstance(start.get("config"), dict):
        config = start["config"]
    if not config and isinstance(meta.get("config"), dict):
        config = meta["config"]
    section = {k: v if isinstance(v, dict) else {} for k, v in config.items()}
    run, train, align, data = (section.get(k, {}) for k in ("run", "train", "align", "data"))
    lineage = meta.get("lineage") if isinstance(meta.get("lineage"), dict) else {}
    pipeline = record.get("pipeline") if isinstance(record.get("pipeline"), dict) else {}
    node = Node(name=str(record.get("name") or run_dir.name), path=run_dir)
    node.stage = (
        start.get("stage") or train.get("stage") or pipeline.get("stage") or meta.get("stage")
    )
    init = run.get("init_from") or lineage.get("init_from") or pipeline.get("parent")
    node.init_from = str(init) if init else None
    node.project = record.get("project") or align.get("project") or lineage.get("project")
    node.soul_version = _int(
        record.get("soul_version") or align.get("soul_version") or lineage.get("soul_version")
    )
    if node.init_from:
        node.from_step = _from_step(node.init_from, start, logs)
    recorded = start.get("dataset")
    if isinstance(recorded, dict) and recorded.get("source"):
        node.dataset = Dataset(
            str(recorded["source"]), _int(recorded.get("rows")), recorded.get("hash") or None
        )
    elif data.get("source"):
        node.dataset = Dataset(str(data["source"]))
    origin = meta.get("origin") if isinstance(meta.get("origin"), dict) else None
    if origin is not None or meta.get("reason") == "import":
        where = (origin or {}).get("path") or "elsewhere"
        node.notes.append(f"imported from {where}")
    if pipeline.get("name"):
        node.notes.append(
            f"pipeline {pipeline['name']}: step {pipeline.get('index')}/{pipeline.get('of')}"
        )
    parent = Path(runs_dir) if runs_dir is not None else paths.runs_dir()
    try:
        outside = run_dir.resolve().parent != parent.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop
        outside = True
    if outside:
        node.notes.append(f"outside the runs dir: {run_dir}")
    if not config and not start and not record:
        node.problem = f"not a readable run: {run_dir} (no config.yaml, run.json or run_start)"
    return node


def _from_step(init_from: str, start: dict[str, Any], logs: list[str]) -> int | None:
    """The parent step a run started from: recorded at its start, in the path, or in its log."""
    recorded = start.get("initialised_from")
    if isinstance(recorded, dict) and _int(recorded.get("step")) is not None:
        return _int(recorded["step"])
    step = parent_location(init_from)[1]
    if step is not None:
        return step
    for message in logs:
        if message.startswith("initialised weights from "):
            name = Path(message.removeprefix("initialised weights from ").strip()).name
            if name.isdigit():
                return int(name)
    return None


def resolve(run_dir: Path, runs_dir: Path | None = None, max_depth: int = MAX_DEPTH) -> list[Node]:
    """The lineage of ``run_dir``, root first, ending with the run itself."""
    chain: list[Node] = []
    seen: set[Path] = set()
    current: Path | None = Path(run_dir).expanduser()
    while current is not None:
        try:
            key = current.resolve()
        except (OSError, RuntimeError):
            key = current
        if key in seen:
            chain.append(Node(name=current.name, path=current, problem=f"cycle: {current} again"))
            break
        if len(chain) >= max_depth:
            chain.append(Node(name="…", problem=f"more than {max_depth} runs: stopped here"))
            break
        seen.add(key)
        if not current.is_dir():
            chain.append(Node(name=current.name, path=current, problem=f"run missing: {current}"))
            break
        node = read_node(current, runs_dir)
        if chain and not node.problem:
            chain[-1].parent = node.name
        chain.append(node)
        if node.problem or not node.init_from:
            break
        parent, step = parent_location(node.init_from)
        if not parent.is_absolute():
            parent = (Path.cwd() / parent).resolve()
        if not parent.is_dir():
            chain.append(
                Node(name=parent.name, path=parent, problem=f"parent missing: {node.init_from}")
            )
            break
        if step is not None and not (parent / rundir.CHECKPOINTS / str(step)).is_dir():
            node.notes.append(f"its parent's checkpoint {step} is no longer on disk")
        current = parent
    chain.reverse()
    return chain


def chain_text(nodes: list[Node]) -> str:
    """One line: ``base (pretrain) → sft (sft) → dpo (dpo)``."""
    return " → ".join(n.label() for n in nodes)


def describe(nodes: list[Node]) -> str:
    """Several lines for a terminal: the chain, then each run with its details."""
    lines = [chain_text(nodes), ""]
    for i, node in enumerate(nodes, start=1):
        lines.append(f"{i}. {node.name}")
        lines.extend(f"   {line}" for line in node.details())
    return "\n".join(lines)


def as_json(nodes: list[Node]) -> list[dict[str, Any]]:
    """The chain as JSON-ready dicts (``runs --lineage --json``)."""
    out = []
    for n in nodes:
        d = {k: v for k, v in n.__dict__.items() if k != "dataset"}
        d["path"] = None if n.path is None else str(n.path)
        d["dataset"] = None if n.dataset is None else dict(n.dataset.__dict__)
        out.append(d)
    return out
