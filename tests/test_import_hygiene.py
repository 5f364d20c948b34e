"""Import hygiene: the UI, config, run-dir and telemetry layers load without JAX, and the engine
and config layers never import Textual."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "nanochat_tui"


def test_ui_and_config_import_without_jax() -> None:
    code = (
        "import sys\n"
        "import nanochat_tui.tui.app, nanochat_tui.config, nanochat_tui.rundir\n"
        "import nanochat_tui.telemetry.events, nanochat_tui.secrets, nanochat_tui.logging_setup\n"
        "import nanochat_tui.tui.screens.config, nanochat_tui.tui.screens.auth\n"
        "from nanochat_tui.plugin_host import get_registry\n"
        "get_registry()\n"
        "bad = sorted(m for m in sys.modules if m == 'jax' or m.startswith(('jax.', 'flax', 'optax', 'orbax')))\n"
        "print(','.join(bad))\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (
        f"JAX stack imported at UI start: {proc.stdout.strip()} {proc.stderr[-2000:]}"
    )


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_engine_and_config_never_import_textual() -> None:
    files = sorted((SRC / "jax_engine").rglob("*.py")) + sorted((SRC / "config").rglob("*.py"))
    assert files, "expected engine and config sources"
    offenders = {
        str(f.relative_to(SRC)): sorted(
            n for n in _imports(f) if n.split(".")[0] in ("textual", "textual_plotext")
        )
        for f in files
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, f"textual imported by engine/config modules: {offenders}"


def test_hygiene_check_can_fail(tmp_path) -> None:
    """The AST check does see a textual import (so the test above can fail)."""
    bad = tmp_path / "bad.py"
    bad.write_text("from textual.app import App\nimport jax\n")
    assert "textual.app" in _imports(bad) and "jax" in _imports(bad)


# Modules kept off the first frame: the config layer (pydantic schema building), yaml, the keyring
# backends and psutil are imported after the app has drawn its chrome (see docs/tui.md).
FIRST_FRAME_LAZY = ("pydantic", "yaml", "keyring", "psutil", "nanochat_tui.config.loader")


def test_app_module_keeps_heavy_modules_lazy() -> None:
    code = (
        "import sys\n"
        "import nanochat_tui.tui.app\n"
        "from nanochat_tui.plugin_host import get_registry\n"
        "from nanochat_tui.tui.app import NanochatApp\n"
        "get_registry()\n"
        "NanochatApp(prefab='tiny')  # constructing the app must not build the config either\n"
        f"lazy = {FIRST_FRAME_LAZY!r}\n"
        "print(','.join(m for m in lazy if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded = proc.stdout.strip()
    assert loaded == "", f"imported before the first frame (make them lazy again): {loaded}"


def test_config_package_names_still_resolve() -> None:
    """The lazy ``nanochat_tui.config`` still exports its public names (and fails on others)."""
    import pytest

    import nanochat_tui.config as config

    for name in config.__all__:
        assert getattr(config, name) is not None
    assert config.load_prefab("tiny").name == "tiny"
    with pytest.raises(AttributeError):
        _ = config.no_such_name
