"""Rows of the Checkpoints pane as plain data: every checkpoint on disk, read from its meta JSON,
checked against a config. No widgets and no JAX here (checkpoints.py draws them)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.text import Text

from nanochat_tui import checkpoint_files, paths
from nanochat_tui.config.compat import (
    Incompat,
    NanochatCheckpoint,
    check,
    list_nanochat_checkpoints,
)
from nanochat_tui.rundir import CheckpointInfo, list_checkpoints, list_run_dirs

log = logging.getLogger("nanochat_tui.tui.checkpoints")


@dataclass
class CheckpointRow:
    """One table row: where it is, what it is, and why it does (not) fit the active config."""

    key: str
    source: str  # "run" (ours, loadable) or "nanochat" (read-only)
    stage: str
    run: str
    step: int
    val_bpb: float | None
    size: int
    date: datetime | None
    meta: dict[str, Any]
    info: CheckpointInfo | NanochatCheckpoint
    problems: list[Incompat] = field(default_factory=list)
    pinned: bool = False
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {value, step}
    damage: str | None = None  # what is wrong with its files (checkpoint_files.damage)

    @property
    def compatible(self) -> bool:
        return not self.problems and self.damage is None

    def measured_at(self, name: str) -> int | None:
        """The step metric ``name`` was measured at, when known."""
        step = self.metrics.get(name, {}).get("step")
        return step if isinstance(step, int) else None

    def metric_text(self, name: str, value: float | None, digits: int = 4) -> Text:
        """``value`` right-aligned, with ``@step`` (dimmed) when measured at another step."""
        if value is None:
            return Text("–", justify="right")
        at = self.measured_at(name)
        if at is None or at == self.step:
            return Text(f"{value:.{digits}f}", justify="right")
        return Text.assemble(f"{value:.{digits}f}", (f" @{at}", "dim"), justify="right")


def _metrics(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = meta.get("metrics")
    if not isinstance(found, dict):
        return {}
    return {k: v for k, v in found.items() if isinstance(v, dict) and "value" in v}


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def _config_tokenizer_hash(config) -> str | None:
    """Hash of the tokenizer the config names (``data.tokenizer``), when it names one that exists."""
    path = config.data.tokenizer
    if not path or not Path(path).expanduser().is_file():
        return None
    try:
        from nanochat_tui.jax_engine.tokenizer import Tokenizer  # tokenizers only, no JAX

        return Tokenizer.load(Path(path).expanduser()).hash
    except Exception as err:  # a broken tokenizer file must not break the listing
        log.warning("cannot hash %s: %s", path, err)
        return None


def fit_problems(config, meta: dict[str, Any]) -> list[Incompat]:
    """Why a checkpoint with ``meta`` cannot start a run of ``config`` (the pane's compatible
    column; ``run.init_from`` of a new run asks first on any); empty when it fits."""
    return check(config, meta, _config_tokenizer_hash(config))


def discover(
    config, runs_dir: Path | None = None, nanochat_base: Path | None = None
) -> list[CheckpointRow]:
    """All checkpoints, newest run first, each checked against ``config``."""
    tok_hash = _config_tokenizer_hash(config)
    rows: list[CheckpointRow] = []
    for run_dir in list_run_dirs(runs_dir or paths.runs_dir()):
        for info in reversed(list_checkpoints(run_dir)):
            meta = info.meta
            when = meta.get("time")
            try:
                date = datetime.fromtimestamp(float(when)) if when is not None else None
            except (TypeError, ValueError, OSError):
                date = None
            if date is None:
                date = datetime.fromtimestamp(info.path.stat().st_mtime)
            bpb = meta.get("val_bpb")
            rows.append(
                CheckpointRow(
                    key=str(info.path),
                    source="run",
                    stage=f"{info.stage}·imported" if "origin" in meta else info.stage,
                    run=str(meta.get("run_name") or run_dir.name),
                    step=info.step,
                    val_bpb=float(bpb) if isinstance(bpb, int | float) else None,
                    size=info.size_bytes(),
                    date=date,
                    meta=meta,
                    info=info,
                    problems=check(config, meta, tok_hash),
                    pinned=info.pinned,
                    metrics=_metrics(meta),
                    damage=checkpoint_files.damage(info.path),
                )
            )
    for nc in reversed(list_nanochat_checkpoints(nanochat_base)):
        rows.append(
            CheckpointRow(
                key=str(nc.path),
                source="nanochat",
                stage=f"nanochat:{nc.stage}",
                run=nc.tag,
                step=nc.step,
                val_bpb=nc.val_bpb,
                size=nc.size_bytes(),
                date=nc.mtime,
                meta=nc.meta,
                info=nc,
                problems=check(config, nc.meta),
            )
        )
    return rows


def newest_intact(rows: list[CheckpointRow], row: CheckpointRow) -> CheckpointRow | None:
    """The newest undamaged checkpoint of ``row``'s run older than it, among ``rows``."""
    older = [
        r
        for r in rows
        if r.source == "run" and r.damage is None and r.step < row.step
        and isinstance(r.info, CheckpointInfo) and isinstance(row.info, CheckpointInfo)
        and r.info.run_dir == row.info.run_dir
    ]  # fmt: skip
    return max(older, key=lambda r: r.step, default=None)


def damage_remedy(rows: list[CheckpointRow], row: CheckpointRow) -> str:
    """What to do about a damaged checkpoint: another one of its run, or deleting it."""
    intact = newest_intact(rows, row)
    other = f"load step {intact.step} of this run (its newest intact one)" if intact else ""
    return f"{other or 'restore it from a backup'}, or delete it (Delete)"


def train_loss(row: CheckpointRow) -> float | None:
    """The train loss recorded with the checkpoint (metrics, or the older top-level key)."""
    value = row.metrics.get("train_loss", {}).get("value", row.meta.get("train_loss"))
    return float(value) if isinstance(value, int | float) else None
