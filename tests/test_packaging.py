"""Packaging settings that users feel on every start."""

from __future__ import annotations

import tomllib
from pathlib import Path


def test_uv_does_not_recompile_bytecode_on_every_run():
    # [tool.uv] compile-bytecode makes every `uv run` re-compile site-packages and print
    # "Bytecode compiled N files" (astral-sh/uv#12202)
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    assert "compile-bytecode" not in pyproject.get("tool", {}).get("uv", {})
