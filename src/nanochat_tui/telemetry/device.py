"""Device metrics for panels and heartbeats: host CPU/RAM (psutil), accelerator memory (JAX, only if
already imported — never imported just for this), GPU utilisation (nvidia-ml-py, only if present)."""

from __future__ import annotations

import contextlib
import sys
from typing import Any


def host_metrics() -> dict[str, Any]:
    """CPU percent (since last call), RAM used/total, this process's RSS."""
    import psutil

    vm = psutil.virtual_memory()
    return {
        "cpu_percent": psutil.cpu_percent(interval=None),
        "cpu_count": psutil.cpu_count(),
        "ram_used_bytes": int(vm.total - vm.available),
        "ram_total_bytes": int(vm.total),
        "process_rss_bytes": int(psutil.Process().memory_info().rss),
    }


def jax_memory() -> list[dict[str, Any]]:
    """Per-device memory from ``memory_stats()`` when JAX is already loaded in this process."""
    jax = sys.modules.get("jax")
    if jax is None:
        return []
    out = []
    for dev in jax.local_devices():
        stats = {}
        try:
            stats = dev.memory_stats() or {}
        except Exception:
            stats = {}
        out.append(
            {
                "id": dev.id,
                "kind": getattr(dev, "device_kind", dev.platform),
                "platform": dev.platform,
                "bytes_in_use": stats.get("bytes_in_use"),
                "peak_bytes_in_use": stats.get("peak_bytes_in_use"),
                "bytes_limit": stats.get("bytes_limit"),
            }
        )
    return out


def gpu_utilization() -> list[dict[str, Any]]:
    """NVIDIA GPU utilisation and memory via NVML, or [] when nvidia-ml-py/NVML is unavailable."""
    try:
        import pynvml  # type: ignore[import-not-found]
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:
        return []
    out = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            util = pynvml.nvmlDeviceGetUtilizationRates(handle)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            out.append(
                {
                    "index": i,
                    "gpu_util_percent": util.gpu,
                    "mem_util_percent": util.memory,
                    "mem_used_bytes": int(mem.used),
                    "mem_total_bytes": int(mem.total),
                }
            )
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()
    return out


def _bytes(n: float) -> str:
    for unit, size in (("T", 2**40), ("G", 2**30), ("M", 2**20), ("k", 2**10)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return f"{n:.0f}"


def device_memory_rows(snap: dict[str, Any]) -> list[tuple[str, str]]:
    """``(label, "used / limit (peak)")`` for every accelerator in a ``snapshot()`` that reports
    memory (a mesh's devices all appear; CPU devices report none), else NVML's GPUs, else []."""
    rows = []
    for dev in snap.get("accelerators") or []:
        used, limit = dev.get("bytes_in_use"), dev.get("bytes_limit")
        if used is None:
            continue
        text = f"{_bytes(used)}B" + (f" / {_bytes(limit)}B" if limit else "")
        if dev.get("peak_bytes_in_use"):
            text += f" (peak {_bytes(dev['peak_bytes_in_use'])}B)"
        rows.append((f"{dev.get('platform', 'dev')}{dev.get('id', len(rows))} mem", text))
    if not rows:
        for gpu in snap.get("gpus") or []:
            used, total = gpu.get("mem_used_bytes"), gpu.get("mem_total_bytes")
            if used is not None:
                label = f"gpu{gpu.get('index', len(rows))} mem"
                rows.append((label, f"{_bytes(used)}B / {_bytes(total or 0)}B"))
    return rows


def snapshot() -> dict[str, Any]:
    """Everything available right now, as a JSON-serialisable dict."""
    data: dict[str, Any] = {"host": host_metrics()}
    accel = jax_memory()
    if accel:
        data["accelerators"] = accel
    gpus = gpu_utilization()
    if gpus:
        data["gpus"] = gpus
    return data
