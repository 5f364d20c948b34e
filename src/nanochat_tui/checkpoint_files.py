"""Whether a checkpoint's files are intact, read without JAX (the TUI lists with this).

When a save is committed the engine records the size of every file of the step directory in
``<step>/files.json`` (``record``). ``damage(step_dir)`` compares the files with it — a data file
truncated (a copy or sync cut short), deleted or grown shows at once, without reading the
arrays — and checks what can be checked without the record (checkpoints written before it): the
metadata and orbax's tree metadata parse, no data file is empty. Bytes changed in place at the
same size are found only by loading (the engine then says "checkpoint N is damaged").
"""

from __future__ import annotations

import json
from pathlib import Path

from nanochat_tui import rundir

FILES = "files.json"  # {"files": {relative path: size in bytes}}, written when the save committed


def _sizes(step_dir: Path) -> dict[str, int]:
    return {
        str(p.relative_to(step_dir)): p.stat().st_size
        for p in sorted(step_dir.rglob("*"))
        if p.is_file() and p.name != FILES
    }


def record(step_dir: Path) -> None:
    """Write ``<step>/files.json``: the size of every file of a committed checkpoint."""
    step_dir = Path(step_dir)
    rundir.write_atomic(step_dir / FILES, json.dumps({"files": _sizes(step_dir)}, indent=0))


def _recorded(step_dir: Path) -> dict[str, int] | None:
    try:
        files = json.loads((step_dir / FILES).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(files, dict):
        return None
    return {str(k): v for k, v in files.items() if isinstance(v, int)}


def damage(step_dir: Path) -> str | None:
    """One line saying what is wrong with a checkpoint's files, or None when nothing is found."""
    step_dir = Path(step_dir)
    if rundir.read_meta(step_dir) is None:
        return f"its metadata ({rundir.META_ITEM}/metadata) is missing or unreadable"
    recorded = _recorded(step_dir)
    if recorded is not None:
        problems = []
        for name, size in recorded.items():
            path = step_dir / name
            if not path.is_file():
                problems.append(f"{name} is missing")
            elif (now := path.stat().st_size) != size:
                cut = " (truncated)" if now < size else ""
                problems.append(f"{name} is {now:,} bytes, {size:,} when saved{cut}")
        if problems:
            more = f"; {len(problems) - 1} more files differ" if len(problems) > 1 else ""
            return problems[0] + more
    state = step_dir / rundir.STATE_ITEM
    if not state.is_dir():
        return f"its weights ({rundir.STATE_ITEM}/) are missing"
    tree = state / "_METADATA"
    try:
        json.loads(tree.read_text(encoding="utf-8"))
    except OSError:
        return f"{rundir.STATE_ITEM}/_METADATA is missing"
    except ValueError:
        return f"{rundir.STATE_ITEM}/_METADATA is not valid JSON"
    for data in sorted(state.rglob("d/*")):
        if data.is_file() and data.stat().st_size == 0:
            return f"{data.relative_to(step_dir)} is empty"
    return None
