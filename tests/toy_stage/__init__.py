"""A training stage from outside nanochat-tui: the whole plugin is this file and ``task.py``, plus
one entry point (``toy = "toy_stage:register"`` in the group ``nanochat_tui.plugins``;
tests/test_plugin_stage.py installs it as a distribution). Nothing in nanochat-tui changes."""

from __future__ import annotations


def register(registry) -> None:
    """Entry point: one stage, ``train.stage: count``."""
    registry.add_stage("count", "toy_stage.task:CountTask", "learn to count (a toy stage)")
