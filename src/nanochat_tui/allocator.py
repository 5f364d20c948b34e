"""Run training and inference processes on mimalloc instead of glibc's malloc (Linux).

XLA:CPU frees and re-allocates its large step buffers every step. glibc hands buffers over its
mmap threshold back to the kernel on free, so each step maps them afresh: at the d4 shape that was
~289k page faults and ~1.2 s of kernel time per step. mimalloc keeps freed memory for reuse: ~12k
faults and ~0.4 s (same peak RSS), measured with ``benchmarks/allocator.py``.

An allocator can only be chosen when a process starts (``LD_PRELOAD``), so the ``nanochat-tui``
command re-executes itself once with it, and detached runs are started with it. The library comes
from the ``cmeel-mimalloc`` wheel (a dependency on Linux). ``NANOCHAT_TUI_ALLOCATOR=system`` keeps
glibc's malloc.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CHOICE_ENV = "NANOCHAT_TUI_ALLOCATOR"  # "mimalloc" (default) | "system"
APPLIED_ENV = "NANOCHAT_TUI_ALLOCATOR_APPLIED"  # set in the re-executed process: never loop


def library() -> Path | None:
    """The mimalloc shared library shipped by ``cmeel-mimalloc``, or None (not Linux, absent)."""
    if not sys.platform.startswith("linux"):
        return None
    import sysconfig

    here = Path(sysconfig.get_paths()["purelib"]) / "cmeel.prefix" / "lib" / "libmimalloc.so"
    if here.is_file():  # the usual place; reading package metadata costs ~30 ms more
        return here
    from importlib import metadata

    try:
        dist = metadata.distribution("cmeel-mimalloc")
    except metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file("cmeel.prefix/lib/libmimalloc.so")))
    return path if path.is_file() else None


def wanted(env: dict[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return env.get(CHOICE_ENV, "mimalloc").strip().lower() != "system"


def active(env: dict[str, str] | None = None) -> bool:
    """Whether ``env`` (default: this process's) already preloads mimalloc."""
    env = os.environ if env is None else env
    return "mimalloc" in env.get("LD_PRELOAD", "")


def environment(env: dict[str, str]) -> dict[str, str]:
    """``env`` plus the preload of mimalloc, for a child process (unchanged when not wanted,
    unavailable or already there)."""
    lib = library()
    if lib is None or not wanted(env) or active(env):
        return env
    preload = env.get("LD_PRELOAD", "")
    return {**env, "LD_PRELOAD": f"{lib}:{preload}" if preload else str(lib), APPLIED_ENV: "1"}


def in_use() -> str:
    """The allocator this process runs on: ``mimalloc`` if its library is mapped, else ``system``."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as f:
            return "mimalloc" if any("libmimalloc" in line for line in f) else "system"
    except OSError:
        return "system"


def reexec(argv: list[str]) -> None:
    """Replace this process by ``python -m nanochat_tui.cli *argv`` on mimalloc, once; returns
    (doing nothing) when not wanted, unavailable, already applied, or the exec fails."""
    if os.environ.get(APPLIED_ENV) or active():
        return
    env = environment(dict(os.environ))
    if APPLIED_ENV not in env:
        return
    try:
        os.execve(sys.executable, [sys.executable, "-m", "nanochat_tui.cli", *argv], env)
    except OSError:
        return
