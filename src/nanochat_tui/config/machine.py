"""This machine's CPU as the estimates see it: usable cores, memory and a measured matmul rate.

The rate is an fp32 NumPy matmul timed ``REPEATS`` times: the median is the estimate, the slowest
and fastest bound its range. Each measurement records when it was taken and how busy the machine
was just before (the busiest of: CPU use of the usable cores over ``BUSY_SAMPLE_S``, and the 1-minute
load average per usable core). It is cached under the user cache dir, keyed by the core count, the
CPU model and the NumPy and JAX versions, and measured again (``remeasure_reason``) when the key
changes, when it is older than ``MAX_AGE_S``, when it was taken on a busy machine (``BUSY``) or when
its own timings spread wide (``MAX_SPREAD``). A busy re-measurement replaces a current cached one
only when it was less busy. The TUI reads the cache (``cached_profile``, which never
measures) and measures in a worker.

``NANOCHAT_TUI_CPU_PROFILE="cores=8,flops=5e11,memory=32G"`` replaces the measurement (tests and
snapshots use it so the estimates table does not depend on the machine that renders it).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from nanochat_tui.errors import UserError
from nanochat_tui.paths import cache_dir
from nanochat_tui.rundir import write_atomic

PROFILE_ENV = "NANOCHAT_TUI_CPU_PROFILE"
CACHE_FILE = "cpu_profile.json"
# What an hour of one local core is counted at in the cost column (a cloud vCPU's price, roughly).
PRICE_PER_CORE_HOUR = 0.05
REPEATS = 7  # timed matmuls per measurement (one warm-up before them)
MAX_AGE_S = 7 * 24 * 3600  # a measurement older than a week is taken again
BUSY = 0.5  # other work on more than half the usable cores slows the matmul: measure again
MAX_SPREAD = 1.5  # fastest / slowest timed matmul beyond this: too noisy, measure again
BUSY_SAMPLE_S = 0.2


@dataclass(frozen=True)
class CpuProfile:
    """Usable cores, total memory in bytes, fp32 matmul FLOP/s (median of the timed runs, with the
    slowest and fastest), where the rate came from, when and how busy the machine was then, and
    why it should be measured again ("" when it is good)."""

    cores: int
    memory: int
    flops: float
    source: str  # "measured" | "cached" | PROFILE_ENV | "pending"
    flops_low: float
    flops_high: float
    measured_at: float = 0.0  # Unix time; 0 for PROFILE_ENV
    busy: float = 0.0  # other work per usable core just before measuring (0 idle, 1 full)
    stale: str = ""

    @property
    def name(self) -> str:
        return f"CPU ({self.cores} core{'s' if self.cores != 1 else ''})"

    @property
    def price_per_hour(self) -> float:
        return self.cores * PRICE_PER_CORE_HOUR

    @property
    def pending(self) -> bool:
        """No rate yet: the first measurement is still running."""
        return self.flops <= 0


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


def busy_share() -> float:
    """How busy the usable cores are right now, 0 (idle) to 1 (every core taken) or more: the
    larger of their CPU use over ``BUSY_SAMPLE_S`` and the 1-minute load average per core (which
    also counts work waiting for a core)."""
    import psutil

    cores = usable_cores()
    per_cpu = psutil.cpu_percent(interval=BUSY_SAMPLE_S, percpu=True)
    try:
        mine = [per_cpu[i] for i in sorted(os.sched_getaffinity(0)) if i < len(per_cpu)]
    except AttributeError:  # not on Linux
        mine = per_cpu
    used = sum(mine) / (100 * len(mine)) if mine else 0.0
    try:
        load = os.getloadavg()[0] / cores
    except (AttributeError, OSError):
        load = 0.0
    return max(used, load)


def time_matmuls(n: int = 1024, repeats: int = REPEATS) -> list[float]:
    """FLOP/s of each of ``repeats`` fp32 ``n×n @ n×n`` NumPy matmuls (all usable cores)."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b  # warm the BLAS threads
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        rates.append(2 * n**3 / max(time.perf_counter() - t0, 1e-9))
    return rates


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
        flops = float(values["flops"]) if "flops" in values else statistics.median(time_matmuls())
        memory = _size(values["memory"]) if "memory" in values else total_memory()
    except ValueError as err:
        raise UserError(
            f"{PROFILE_ENV}: {err}", "cores is an integer, flops a number, memory e.g. 32G"
        ) from None
    if cores < 1 or flops <= 0 or memory <= 0:
        raise UserError(f"{PROFILE_ENV}: values must be positive", f"got {text!r}")
    return CpuProfile(cores, memory, flops, PROFILE_ENV, flops, flops)


def _size(text: str) -> int:
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    suffix = text[-1:].upper()
    return int(float(text[:-1]) * units[suffix]) if suffix in units else int(float(text))


# ---------------------------------------------------------------- the cached measurement


def cache_key() -> dict[str, Any]:
    """What a measurement holds for: this CPU and core count, the NumPy that ran it and the JAX
    that trains (read from package metadata: nothing is imported)."""
    versions = {}
    for package in ("numpy", "jax"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = ""
    return {"cores": usable_cores(), "cpu": cpu_model(), **versions}


def remeasure_reason(record: dict[str, Any] | None, key: dict[str, Any], now: float) -> str:
    """Why a cached measurement should be taken again, or "" when it is good."""
    if not record:
        return "not measured yet"
    if record.get("key") != key:
        return "measured on another CPU or NumPy/JAX version"
    age = now - float(record["measured_at"])
    if age > MAX_AGE_S:
        return f"measured {age / 86400:.0f} days ago"
    if float(record["busy"]) > BUSY:
        return f"measured while the machine was busy (load {float(record['busy']):.1f} per core)"
    if float(record["high"]) > MAX_SPREAD * float(record["low"]):
        return "its timings spread wide"
    return ""


def read_record(path: Any = None) -> dict[str, Any] | None:
    """The cached measurement (None when missing, unreadable or from an older format)."""
    path = path or cache_dir() / CACHE_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        for field in ("flops", "low", "high", "measured_at", "busy"):
            if not float(record[field]) >= 0:  # also refuses NaN
                return None
        if not float(record["flops"]) > 0:
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return record


def _profile(record: dict[str, Any], source: str, stale: str) -> CpuProfile:
    return CpuProfile(
        usable_cores(),
        total_memory(),
        float(record["flops"]),
        source,
        float(record["low"]),
        float(record["high"]),
        float(record["measured_at"]),
        float(record["busy"]),
        stale,
    )


def cached_profile(now: float | None = None) -> CpuProfile | None:
    """What the estimates can show without measuring: the env override (when it names a rate) or
    the cached measurement, its ``stale`` saying why it should be taken again; None when there is
    none yet. Cheap: imports neither NumPy nor JAX."""
    override = os.environ.get(PROFILE_ENV)
    if override:
        return parse_profile(override) if "flops" in override else None
    record = read_record()
    if record is None:
        return None
    now = time.time() if now is None else now
    return _profile(record, "cached", remeasure_reason(record, cache_key(), now))


def pending_profile() -> CpuProfile:
    """This machine's cores and memory while its first rate is being measured."""
    return CpuProfile(usable_cores(), total_memory(), 0.0, "pending", 0.0, 0.0)


def load_profile(
    now: float | None = None,
    busy: Callable[[], float] | None = None,
    measure: Callable[[], list[float]] | None = None,
) -> CpuProfile:
    """The env override, else the cached measurement when it is good, else a new one (cached
    unless it was busy and the cached one, still current, was taken on a quieter machine).
    ``now``, ``busy`` and ``measure`` default to the clock, ``busy_share`` and ``time_matmuls``."""
    override = os.environ.get(PROFILE_ENV)
    if override:
        return parse_profile(override)
    now = time.time() if now is None else now
    key = cache_key()
    path = cache_dir() / CACHE_FILE
    cached = read_record(path)
    if cached is not None and not remeasure_reason(cached, key, now):
        return _profile(cached, "cached", "")
    load = (busy or busy_share)()
    rates = (measure or time_matmuls)()
    record: dict[str, Any] = {
        "key": key,
        "flops": statistics.median(rates),
        "low": min(rates),
        "high": max(rates),
        "measured_at": now,
        "busy": round(load, 3),
    }
    source = "measured"
    if (
        cached is not None
        and cached.get("key") == key
        and now - float(cached["measured_at"]) <= MAX_AGE_S
        and load > BUSY
        and float(cached["busy"]) < load
    ):  # busy now, and busier than when the cached rate was taken: keep that one
        record, source = cached, "cached"
    else:
        with contextlib.suppress(OSError):  # a read-only cache only costs a re-measure next start
            write_atomic(path, json.dumps(record))
    return _profile(record, source, remeasure_reason(record, key, now))


@functools.cache
def cpu_profile() -> CpuProfile:
    """This machine's profile, once per process (``load_profile``)."""
    return load_profile()
