"""Compare runs from their local directories: metric series, config differences, export.

``load_series(run_dir)`` reads ``events.jsonl`` once into, per metric, points of (step, tokens
seen, seconds since the run started, value): step-event metrics (nested dicts flattened as
``loss_components.ce``) and eval metrics (``val_bpb``, ``val_loss``). ``config_diff`` lists the
dotted config keys whose values differ between runs. ``export`` writes the chosen series as CSV
or JSON. Pure data: no widgets, no JAX.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nanochat_tui import rundir
from nanochat_tui.errors import UserError

AXES = ("step", "tokens", "time")
AXIS_LABELS = {"step": "step", "tokens": "tokens seen", "time": "wall time (s)"}
_NOT_METRICS = frozenset({"type", "time", "step", "tokens"})


@dataclass
class RunSeries:
    """One run's metrics; ``points[metric]`` = [(step, tokens, seconds, value), ...]."""

    name: str
    run_dir: Path
    points: dict[str, list[tuple[int, float | None, float, float]]] = field(default_factory=dict)

    def metrics(self) -> list[str]:
        return sorted(self.points)

    def xy(self, metric: str, axis: str) -> tuple[list[float], list[float]]:
        """(xs, ys) of ``metric`` against ``axis`` (points without that x are left out)."""
        index = AXES.index(axis)
        xs, ys = [], []
        for point in self.points.get(metric, []):
            x = point[index]
            if x is not None:
                xs.append(float(x))
                ys.append(point[3])
        return xs, ys


def _add(series: RunSeries, name: str, point: tuple[int, float | None, float], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not math.isfinite(value):
        return
    series.points.setdefault(name, []).append((*point, float(value)))


def load_series(run_dir: Path) -> RunSeries:
    """Every numeric metric of a run, from its events.jsonl."""
    from nanochat_tui.orchestrator.runner import read_record
    from nanochat_tui.telemetry.jsonl import read_events

    run_dir = Path(run_dir)
    name = read_record(run_dir).get("name") or run_dir.name
    series = RunSeries(name, run_dir)
    start: float | None = None
    tokens: float | None = None
    for event in read_events(run_dir / rundir.EVENTS):
        t = event.get("time")
        if start is None and isinstance(t, (int, float)):
            start = t
        step = event.get("step")
        if not isinstance(step, int):
            continue
        if isinstance(event.get("tokens"), (int, float)):
            tokens = float(event["tokens"])
        seconds = (t - start) if isinstance(t, (int, float)) and start is not None else 0.0
        point = (step, tokens, seconds)
        kind = event.get("type")
        if kind == "step":
            for key, value in event.items():
                if key in _NOT_METRICS:
                    continue
                if isinstance(value, dict):
                    for sub, v in value.items():
                        _add(series, f"{key}.{sub}", point, v)
                else:
                    _add(series, key, point, value)
        elif kind == "eval":
            for key in ("val_bpb", "val_loss"):
                _add(series, key, point, event.get(key))
    return series


def common_metrics(runs: list[RunSeries]) -> list[str]:
    """Metrics any of the runs has, the usual ones first."""
    names = sorted({m for r in runs for m in r.points})
    first = [m for m in ("loss", "val_bpb", "val_loss") if m in names]
    return first + [m for m in names if m not in first]


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(_flatten(value, dotted))
        else:
            out[dotted] = value
    return out


def run_config(run_dir: Path) -> dict[str, Any]:
    """The run's resolved config.yaml as a flat {dotted key: value} (empty if unreadable)."""
    import yaml

    try:
        data = yaml.safe_load((Path(run_dir) / rundir.CONFIG).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return {}
    return _flatten(data) if isinstance(data, dict) else {}


def config_diff(
    run_dirs: list[Path], ignore: tuple[str, ...] = ("run.name",)
) -> list[tuple[str, list[Any]]]:
    """(dotted key, [value per run]) for every config key whose values differ between runs."""
    configs = [run_config(d) for d in run_dirs]
    keys = sorted({k for c in configs for k in c} - set(ignore))
    missing = object()
    rows = []
    for key in keys:
        values = [c.get(key, missing) for c in configs]
        if any(v != values[0] for v in values[1:]):
            rows.append((key, [None if v is missing else v for v in values]))
    return rows


def export(runs: list[RunSeries], metric: str, axis: str, path: Path) -> Path:
    """Write ``metric`` against ``axis`` for ``runs`` to ``path`` (.json, else CSV); atomic."""
    from nanochat_tui.rundir import write_atomic

    if axis not in AXES:
        raise UserError(f"unknown x axis {axis!r}", f"use one of {', '.join(AXES)}")
    path = Path(path).expanduser()
    if path.suffix.lower() == ".json":
        payload = {
            "metric": metric,
            "x": axis,
            "runs": [
                {"name": r.name, "run_dir": str(r.run_dir), "x": xs, "y": ys}
                for r in runs
                for xs, ys in [r.xy(metric, axis)]
            ],
        }
        text = json.dumps(payload, indent=1) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["run", axis, metric])
        for r in runs:
            for x, y in zip(*r.xy(metric, axis), strict=True):
                writer.writerow([r.name, repr(x) if not x.is_integer() else int(x), repr(y)])
        text = buffer.getvalue()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, text)
    except OSError as err:
        raise UserError(
            f"cannot write {path}: {err.strerror or err}", "pick another path"
        ) from None
    return path
