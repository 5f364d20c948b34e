"""The console script's exit once JAX is loaded: atexit handlers and log flushes still run, the
status is kept, and the interpreter's native teardown is skipped (nanochat_tui/exiting.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import atexit, logging, sys
from pathlib import Path
import jax.numpy as jnp
out = Path(sys.argv[1])
logging.basicConfig(filename=str(out / "log.txt"), level=logging.INFO)
atexit.register(lambda: (out / "atexit.txt").write_text("ran"))
logging.getLogger("t").info("logged before leaving")
print("value", int(jnp.arange(4).sum()))
from nanochat_tui.exiting import leave
leave(3)
print("never printed")
"""


def test_leave_runs_exit_handlers_and_keeps_the_status(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.splitlines() == ["value 6"]
    assert (tmp_path / "atexit.txt").read_text() == "ran"
    assert "logged before leaving" in (tmp_path / "log.txt").read_text()


def test_leave_without_jax_is_a_plain_exit(tmp_path: Path) -> None:
    code = "import sys; from nanochat_tui.exiting import leave; leave(5)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 5 and "jaxlib" not in proc.stderr
