"""This machine's CPU as the estimates see it: usable cores, memory and a measured matmul rate.

The rate is an fp32 NumPy matmul measured once and cached under the user cache dir, keyed by the
core count, the CPU model and the NumPy version, so the Config pane never re-measures on start.
``NANOCHAT_TUI_CPU_PROFILE="cores=8,flops=5e11,memory=32G"`` replaces the measurement (tests and
snapshots use it so the estimates table does not depend on the machine that renders it).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import time
from dataclasses import dataclass

from nanochat_tui.errors import UserError
from nanochat_tui.paths import cache_dir
from nanochat_tui.rundir import write_atomic

PROFILE_ENV = "NANOCHAT_TUI_CPU_PROFILE"
CACHE_FILE = "cpu_profile.json"
# What an hour of one local core is counted at in the cost column (a cloud vCPU's price, roughly).
PRICE_PER_CORE_HOUR = 0.05


@dataclass(frozen=True)
class CpuProfile:
    """Usable cores, total memory in bytes, fp32 matmul FLOP/s, and where that rate came from."""

    cores: int
    memory: int
    flops: float
    source: str  # "measured" | "cached" | PROFILE_ENV

    @property
    def name(self) -> str:
        return f"CPU ({self.cores} core{'s' if self.cores != 1 else ''})"

    @property
    def price_per_hour(self) -> float:
        return self.cores * PRICE_PER_CORE_HOUR


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, not the host's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def total_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def measure_matmul_flops(n: int = 1024, repeats: int = 5) -> float:
    """Best-of-``repeats`` FLOP/s of an fp32 ``n×n @ n×n`` NumPy matmul (all usable cores)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm the BLAS threads
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / max(best, 1e-9)


def parse_profile(text: str) -> CpuProfile:
    """``cores=8,flops=5e11,memory=32G`` → a profile (memory takes K/M/G/T suffixes)."""
    values: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in {"cores", "flops", "memory"}:
            raise UserError(
                f"{PROFILE_ENV}: cannot read {part!r}",
                "write it as cores=N,flops=X,memory=SIZE, e.g. cores=8,flops=5e11,memory=32G",
            )
        values[key.strip()] = value.strip()
    try:
        cores = int(values.get("cores", usable_cores()))
        flops = float(values["flops"]) if "flops" in values else measure_matmul_flops()
        memory = _size(values["memory"]) if "memory" in values else total_memory()
    except ValueError as err:
        raise UserError(
            f"{PROFILE_ENV}: {err}", "cores is an integer, flops a number, memory e.g. 32G"
        ) from None
    if cores < 1 or flops <= 0 or memory <= 0:
        raise UserError(f"{PROFILE_ENV}: values must be positive", f"got {text!r}")
    return CpuProfile(cores, memory, flops, PROFILE_ENV)


def _size(text: str) -> int:
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    suffix = text[-1:].upper()
    return int(float(text[:-1]) * units[suffix]) if suffix in units else int(float(text))


@functools.cache
def cpu_profile() -> CpuProfile:
    """This machine's profile: the env override, else the cache, else a fresh measurement."""
    override = os.environ.get(PROFILE_ENV)
    if override:
        return parse_profile(override)
    cores, memory = usable_cores(), total_memory()
    key = {"cores": cores, "cpu": cpu_model(), "numpy": _numpy_version()}
    path = cache_dir() / CACHE_FILE
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached.get("key") == key and float(cached["flops"]) > 0:
            return CpuProfile(cores, memory, float(cached["flops"]), "cached")
    except (OSError, ValueError, KeyError, TypeError):
        pass
    flops = measure_matmul_flops()
    with contextlib.suppress(OSError):  # a read-only cache only costs a re-measure next start
        write_atomic(path, json.dumps({"key": key, "flops": flops}))
    return CpuProfile(cores, memory, flops, "measured")


def _numpy_version() -> str:
    import numpy as np

    return np.__version__
