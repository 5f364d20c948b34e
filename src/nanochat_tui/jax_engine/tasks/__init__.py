"""A stage is a task: what the generic loop (loop.py) needs to know about pretraining, SFT, DPO, ...

A task owns its data (a batch iterator with a resumable position), its loss, its evaluation and
its samples; the loop owns everything else (tokenizer, model, optimizer, schedule, cadence,
control, events, checkpoints, resume). A stage is one registry entry (``StageEntry``: name ->
``"module:TaskClass"``): a built-in stage is one file here plus one row in ``builtins.py``; a
plugin adds its own with ``registry.add_stage`` (docs/plugins.md). ``train.stage`` accepts every
registered name.

The loss contract (``Task.loss``) makes gradient accumulation token-weighted: it returns *sums*,
not means, and the step (step.py) adds them over micro-batches and divides once.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Protocol


class BatchIterator(Protocol):
    """Batches for the step, in a deterministic order that a position restores exactly."""

    position: dict[str, Any]
    """JSON-serialisable place *after* the last batch handed out (saved in checkpoint meta as
    ``data_position``; passing it back to ``Task.batches`` continues with the next batch)."""

    data_wait: float
    """Seconds ``next()`` has spent waiting for data, cumulative."""

    def next(self) -> tuple[Any, Any]:
        """``(x, y)``: pytrees of device arrays whose leaves are ``[M, B, ...]`` (M micro-batches)."""

    def close(self) -> None:
        """Stop any background producer."""

    @property
    def epoch_fraction(self) -> float:
        """Epochs of training data consumed (for the ``epoch`` field of step events)."""


def dataset_identity(source: str, rows: int, content: Iterable[bytes]) -> dict[str, Any]:
    """``{"source", "rows", "hash"}``: the data a run trained on, for its lineage (a task's
    ``prepare`` returns it as the ``run_start`` event's ``dataset``). ``hash``: the first 12 hex
    digits of SHA-256 over ``content`` (a file's bytes: ``sha256sum FILE`` starts the same)."""
    digest = hashlib.sha256()
    for part in content:
        digest.update(part)
    return {"source": source, "rows": int(rows), "hash": digest.hexdigest()[:12]}


class Task(ABC):
    """One training stage. Subclasses set ``stage`` and implement the abstract methods."""

    stage: ClassVar[str]
    headline: ClassVar[tuple[str, ...]] = ("val_bpb",)
    """The evaluation fields that say how the stage went: the CLI's end-of-run summary and the
    ``run_end`` event's ``metrics`` carry them."""

    def __init__(self, config: Any, tokenizer: Any, log: Callable[[str], None]) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self.log = log

    @abstractmethod
    def prepare(self) -> dict[str, Any]:
        """Load or build the stage's data (the ``data`` start-up phase). Returns extra
        ``run_start`` fields (e.g. ``train_tokens``, ``val_tokens``)."""

    @abstractmethod
    def batches(self, position: dict[str, Any] | None) -> BatchIterator:
        """Training batches from ``position`` (None = the beginning)."""

    @staticmethod
    @abstractmethod
    def loss(model: Any, x: Any, y: Any) -> tuple[Any, Any, dict[str, Any]]:
        """On one micro-batch (leaves ``[B, ...]``), traced under jit: ``(loss_sum, count, aux)``.

        ``loss_sum`` is the summed loss over supervised units (tokens, or pairs for DPO),
        ``count`` how many there were, ``aux`` a dict of named scalar *sums* over the same units.
        The step reports ``loss_sum / count`` as ``loss`` and ``aux[k] / count`` as the step
        event's ``aux`` entries. Must be a plain function, or a hashable callable such as a frozen
        dataclass holding the stage's settings (it is a static argument of the jit)."""

    @abstractmethod
    def evaluate(self, model: Any) -> dict[str, float]:
        """The stage's evaluation, emitted as the ``eval`` event's fields (e.g. ``val_bpb``)."""

    def sample(self, model: Any, step: int) -> list[dict[str, str]]:
        """``[{prompt, completion}]`` to show progress; none by default."""
        return []


def get_task(stage: str) -> type[Task]:
    """The task class registered for ``stage`` (built-in or a plugin's)."""
    from nanochat_tui.errors import UserError
    from nanochat_tui.plugin_host import get_registry
    from nanochat_tui.registry import BUILTIN, resolve

    registry = get_registry()
    entry = registry.stages.get(stage)
    if entry is None:
        known = ", ".join(sorted(registry.stages))
        raise UserError(f"unknown training stage {stage!r}", f"use one of: {known}")
    if registry.owners.get(f"stage {stage}") == BUILTIN:
        return resolve(entry.ref)  # ours: a failure here is a bug, with its traceback
    try:
        cls = resolve(entry.ref)
    except Exception as err:
        raise UserError(
            f"stage {stage}: {entry.ref} did not load ({type(err).__name__}: {err})",
            "fix or disable the plugin that registered it (`nanochat-tui plugins`)",
        ) from err
    if not (
        isinstance(cls, type) and issubclass(cls, Task) and getattr(cls, "stage", None) == stage
    ):
        raise UserError(
            f"stage {stage}: {entry.ref} is not a Task subclass whose stage is {stage!r}",
            "fix or disable the plugin that registered it (`nanochat-tui plugins`)",
        )
    return cls
