"""Sampling settings (temperature, top-k, max tokens): one place for their ranges and messages.

The Chat pane validates each of its fields with ``check_field`` (every bad field gets its own
reason) and the ``chat``/``eval`` commands use ``argparse_type`` so a negative temperature is
refused before a checkpoint is loaded. Pure Python: no JAX, no Textual.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    label: str
    cast: Callable[[str], float | int]
    lo: float
    hi: float
    meaning: str


LIMITS: dict[str, Limit] = {
    "temperature": Limit("temperature", float, 0.0, 5.0, "0 = greedy, 1 = the model's own odds"),
    "top_k": Limit("top-k", int, 0, 1_000_000, "0 = sample from every token"),
    "max_tokens": Limit("max tokens", int, 1, 8192, "reply length limit in tokens"),
}


def check_field(name: str, text: str) -> tuple[float | int | None, str | None]:
    """(value, None) for a good ``text``, else (None, a reason naming the field and the fix)."""
    limit = LIMITS[name]
    raw = text.strip()
    kind = "a whole number" if limit.cast is int else "a number"
    try:
        value = limit.cast(raw)
    except ValueError:
        return None, f"{limit.label}: {raw!r} is not {kind} (use {limit.lo:g} to {limit.hi:g})"
    if value != value or not limit.lo <= value <= limit.hi:  # NaN fails the range test too
        return None, (
            f"{limit.label}: {raw} is out of range; use {limit.lo:g} to {limit.hi:g} "
            f"({limit.meaning})"
        )
    return value, None


def argparse_type(name: str) -> Callable[[str], float | int]:
    """An argparse ``type=`` that applies the same range check as the Chat pane."""

    def parse(text: str) -> float | int:
        value, error = check_field(name, text)
        if error:
            raise argparse.ArgumentTypeError(error)
        return value  # type: ignore[return-value]

    parse.__name__ = LIMITS[name].label
    return parse
