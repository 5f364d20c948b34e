"""Layering contracts (pyproject.toml [tool.importlinter]) hold, and a deliberate violation fails them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = [
    sys.executable,
    "-c",
    "import sys; from importlinter.cli import lint_imports_command as c; sys.exit(c())",
]


def _lint(cwd: Path, src: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [*LINT, "--config", str(cwd / "pyproject.toml"), "--no-cache"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_layer_contracts_hold() -> None:
    proc = _lint(ROOT, ROOT / "src")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_deliberate_violation_breaks_a_contract(tmp_path: Path) -> None:
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    model = tmp_path / "src" / "nanochat_tui" / "jax_engine" / "model.py"
    model.write_text(model.read_text() + "\nfrom nanochat_tui.orchestrator import runner  # noqa\n")
    proc = _lint(tmp_path, tmp_path / "src")
    assert proc.returncode != 0
    assert "BROKEN" in proc.stdout and "nanochat_tui.orchestrator.runner" in proc.stdout
