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
