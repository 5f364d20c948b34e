"""The persistent compilation cache: where ``enable`` puts it, that a user's own choice wins, and
that a second process loads a compiled program instead of compiling it (each case in a fresh
interpreter: JAX's cache settings are process-wide)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PROGRAM = """
import json, sys, time
import jax, jax.numpy as jnp
from nanochat_tui.jax_engine import compile_cache
folder = compile_cache.enable()
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # the tiny program counts
hits = []
jax.monitoring.register_event_listener(
    lambda event, **kw: hits.append(event) if event == "/jax/compilation_cache/cache_hits" else None
)
f = jax.jit(lambda x: jnp.tanh(x @ x.T).sum())
f(jnp.ones((16, 16))).block_until_ready()
print(json.dumps({"folder": str(folder), "config": jax.config.jax_compilation_cache_dir,
                  "hits": len(hits)}))
"""


def _run(env: dict[str, str]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cache_lives_in_the_data_folder_and_a_second_process_hits_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"NANOCHAT_TUI_HOME": str(home), "JAX_COMPILATION_CACHE_DIR": ""}
    first = _run(env)
    folder = Path(first["folder"])
    assert folder.is_relative_to(home) and folder.name == "xla"
    assert first["config"] == str(folder) and first["hits"] == 0
    assert any(folder.iterdir())  # the program was written
    assert _run(env)["hits"] >= 1  # and read back by the next process


def test_a_cache_folder_chosen_for_jax_is_kept(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    got = _run(
        {"NANOCHAT_TUI_HOME": str(tmp_path / "home"), "JAX_COMPILATION_CACHE_DIR": str(mine)}
    )
    assert got["folder"] == got["config"] == str(mine)
    assert any(mine.iterdir())
