"""Layering contracts (pyproject.toml [tool.importlinter]) hold, and a deliberate violation fails them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

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


# One deliberate violation per registry rule (issue 28.5): the contract named breaks, showing the chain.
REGISTRY_RULES = {
    "the registry imports nothing of ours": (
        "registry.py",
        "from nanochat_tui import paths",
        "nanochat_tui.registry -> nanochat_tui.paths",
    ),
    "the built-in table and the plugin host sit on the ground floor": (
        "plugin_host.py",
        "from nanochat_tui.config import loader",
        "nanochat_tui.plugin_host -> nanochat_tui.config.loader",
    ),
    "no core module imports the bundled plugins: they load through their entry points": (
        "config/estimates.py",
        "from nanochat_tui.bundled.moe import config",
        "nanochat_tui.config.estimates -> nanochat_tui.bundled.moe.config",
    ),
}


def _squashed(text: str) -> str:
    return "".join(text.split())  # import-linter wraps long contract names


@pytest.mark.parametrize("contract", REGISTRY_RULES)
def test_each_registry_rule_catches_its_violation(contract: str, tmp_path: Path) -> None:
    module, line, chain = REGISTRY_RULES[contract]
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    path = tmp_path / "src" / "nanochat_tui" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    proc = _lint(tmp_path, tmp_path / "src")
    assert proc.returncode != 0
    out = _squashed(proc.stdout)
    assert _squashed(f"{contract} BROKEN") in out, proc.stdout[-3000:]
    assert _squashed(chain) in out, proc.stdout[-3000:]


def test_no_contract_exempts_the_registry_or_the_bundled_plugins() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    ignores = [i for c in config["contracts"] for i in c.get("ignore_imports", [])]
    assert not [i for i in ignores if "bundled" in i or "plugin" in i or "registry" in i]
    names = {c["name"] for c in config["contracts"]}
    assert set(REGISTRY_RULES) <= names
