"""JAX's persistent compilation cache under the user's cache folder.

With it, a program XLA compiled once (a serving shape, a train step) is loaded from disk the next
time a process needs it, instead of being compiled again: a restarted server is warm in seconds.
The folder is ``<data>/cache/xla`` (``$NANOCHAT_TUI_HOME/data/cache/xla`` when that is set), capped
at ``MAX_BYTES`` (least recently used entries go first) and safe to delete. A cache folder the user
chose with JAX's own ``JAX_COMPILATION_CACHE_DIR`` is kept.
"""

from __future__ import annotations

from pathlib import Path

MAX_BYTES = 2 << 30
MIN_COMPILE_S = 0.1  # programs that compile faster than this are not worth a disk read


def enable() -> Path:
    """Turn the cache on for this process (idempotent); returns its folder."""
    import jax

    from nanochat_tui import paths

    chosen = jax.config.jax_compilation_cache_dir
    folder = Path(chosen) if chosen else paths.cache_dir() / "xla"
    folder.mkdir(parents=True, exist_ok=True)
    if not chosen:
        jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_S)
    jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
    return folder
