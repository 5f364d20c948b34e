"""Multi-device training on 8 virtual CPU devices (a subprocess: the device count is fixed when
JAX starts, and this pytest process has started it already): every mesh gives the one-device loss
sequence, and a checkpoint saved on 8 devices resumes on 1 and on 2×4 where the 8-device run would
have gone on; the model is built sharded with the values of an unsharded initialisation. Plus
the layout arithmetic and its refusals (no JAX needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import tiny_overrides
from nanochat_tui.config import load_config
from nanochat_tui.config.estimates import compatibility_matrix, memory_estimate, mesh_layout
from nanochat_tui.errors import UserError

WORKER = Path(__file__).parent / "sharding_worker.py"
# fp32 with a different reduction order (8 micro-batches summed in a scan vs one all-reduce over 8
# devices, sharded matmuls): agreement to ~1e-6 relative is expected; 1e-5 leaves room for XLA.
RTOL = 1e-5
RECIPE_2026 = {"model.recipe": "nanochat-2026"}


def _run_worker(root: Path, runs: list[dict]) -> dict:
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": "8", "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = (
        env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()
    proc = subprocess.run(
        [sys.executable, str(WORKER), json.dumps({"root": str(root), "runs": runs})],
        capture_output=True,
        text=True,
        env=env,
        timeout=1200,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    return json.loads(lines[-1][len("RESULT ") :])


def _close(a: list[float], b: list[float]) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= RTOL * abs(y) for x, y in zip(a, b, strict=True))


@pytest.mark.timeout(1800)  # six (three) tiny runs in subprocesses: slow on a loaded machine
def test_meshes_match_one_device_and_resume_across_meshes(tmp_path: Path) -> None:
    runs = [
        {"name": "one", "mesh": [1, 1], "steps": 5},
        {"name": "data8", "mesh": [8, 1], "steps": 3},
        {"name": "fsdp8", "mesh": [1, 8], "steps": 3},
        {"name": "mixed", "mesh": [2, 4], "steps": 3},
        {"name": "fsdp8-on-1", "mesh": [1, 1], "steps": 5, "from": "fsdp8"},
        {"name": "fsdp8-on-2x4", "mesh": [2, 4], "steps": 5, "from": "fsdp8"},
        # nanochat's Muon (2026 recipe) gathers each sharded matrix before Newton–Schulz
        {"name": "one-2026", "mesh": [1, 1], "steps": 2, "set": RECIPE_2026},
        {"name": "fsdp8-2026", "mesh": [1, 8], "steps": 2, "set": RECIPE_2026},
    ]
    out = _run_worker(tmp_path, runs)
    ref = out["one"]
    assert ref["status"] == "finished" and ref["devices_used"] == 1
    assert ref["grad_accum_steps"] == 8 and len(ref["losses"]) == 5
    for name in ("data8", "fsdp8", "mixed"):
        got = out[name]
        assert got["devices_used"] == 8 and got["grad_accum_steps"] == 1, got
        assert _close(got["losses"], ref["losses"][:3]), (name, got["losses"], ref["losses"])
    for name in ("fsdp8-on-1", "fsdp8-on-2x4"):
        got = out[name]
        assert got["status"] == "finished" and got["step"] == 5, got
        assert _close(got["losses"], ref["losses"][3:]), (name, got["losses"], ref["losses"])
    assert out["fsdp8-on-2x4"]["devices_used"] == 8 and out["fsdp8-on-1"]["devices_used"] == 1
    got, want = out["fsdp8-2026"]["losses"], out["one-2026"]["losses"]
    assert out["fsdp8-2026"]["devices_used"] == 8 and _close(got, want), (got, want)


SCANNED = {"model.depth": 2, "model.scan_layers": True}


@pytest.mark.timeout(1200)
def test_scanned_runs_train_stacked_on_a_mesh_and_resume_on_one_device(tmp_path: Path) -> None:
    """With model.scan_layers the step keeps the blocks stacked over layers (stacked.py): on an
    fsdp=8 mesh (the layer axis unsplit, each layer split as it would be alone) it gives the
    one-device loss sequence, and its checkpoint (per-layer, as always) resumes on one device
    where the 8-device run would have gone on."""
    runs = [
        {"name": "one-scan", "mesh": [1, 1], "steps": 5, "set": SCANNED},
        {"name": "fsdp8-scan", "mesh": [1, 8], "steps": 3, "set": SCANNED},
        {"name": "mixed-scan", "mesh": [2, 4], "steps": 3, "set": SCANNED},
        {"name": "fsdp8-scan-on-1", "mesh": [1, 1], "steps": 5, "from": "fsdp8-scan", "set": SCANNED},
    ]  # fmt: skip
    out = _run_worker(tmp_path, runs)
    ref = out["one-scan"]["losses"]
    assert out["one-scan"]["status"] == "finished" and len(ref) == 5
    for name in ("fsdp8-scan", "mixed-scan"):
        got = out[name]
        assert got["devices_used"] == 8 and _close(got["losses"], ref[:3]), (name, got, ref)
    got = out["fsdp8-scan-on-1"]
    assert got["status"] == "finished" and got["step"] == 5, got
    assert _close(got["losses"], ref[3:]), (got["losses"], ref)


@pytest.mark.timeout(900)
def test_model_is_built_sharded_with_the_unsharded_values(tmp_path: Path) -> None:
    """Parameters and optimizer state built on an fsdp=8 mesh (Placement.build_sharded, as every
    run starts) equal an eager one-device GPT of the same seed, and so does the first loss. The
    2025 recipe's initialisers agree bit for bit; the 2026 recipe's differ by at most 2 float32
    ulps (XLA fuses its scaled normal draws differently under one jit than op by op)."""
    runs = [
        {"name": "fsdp8", "mesh": [1, 8], "init": True},
        {"name": "fsdp8-2026", "mesh": [1, 8], "init": True, "set": RECIPE_2026},
    ]
    out = _run_worker(tmp_path, runs)
    got = out["fsdp8"]
    assert got["laid_out"] and got["split_arrays"] > 0, got
    assert got["max_diff"] == 0.0 and got["losses"][0] == got["losses"][1], got
    got = out["fsdp8-2026"]
    assert got["laid_out"] and got["split_arrays"] > 0, got
    assert got["max_diff"] <= 5e-7, got  # 2 ulps at |w| < 4 (the largest embedding entries)
    assert abs(got["losses"][0] - got["losses"][1]) <= 1e-6 * abs(got["losses"][1]), got


def _config(**changes):
    return load_config("tiny", tiny_overrides(changes))


def test_layout_resolves_minus_one_and_accumulation() -> None:
    cfg = _config(**{"train.device_batch_size": 1, "train.total_batch_size": 512})
    one = mesh_layout(cfg, 1)
    assert (one.data, one.fsdp, one.accum, one.global_batch) == (1, 1, 8, 1)
    eight = mesh_layout(cfg, 8)
    assert (eight.data, eight.fsdp, eight.accum, eight.global_batch) == (8, 1, 1, 8)
    cfg = _config(
        **{
            "train.device_batch_size": 1,
            "train.total_batch_size": 512,
            "mesh.fsdp": -1,
            "mesh.data": 2,
        }
    )
    lay = mesh_layout(cfg, 8)
    assert (lay.data, lay.fsdp, lay.label) == (2, 4, "2×4")
    # a layout smaller than the machine uses the first devices
    cfg = _config(**{"mesh.data": 1})
    assert mesh_layout(cfg, 8).devices == 1


@pytest.mark.parametrize(
    ("changes", "devices", "names"),
    [
        ({"mesh.data": 3}, 8, ["mesh.data", "mesh.fsdp", "3×1"]),
        ({"mesh.fsdp": 3}, 8, ["mesh.fsdp=3", "8 devices"]),
        ({}, 8, ["train.total_batch_size 256", "train.device_batch_size", "mesh.data × mesh.fsdp"]),
    ],
)
def test_layout_refusals_name_the_fields(changes, devices, names) -> None:
    with pytest.raises(UserError) as err:
        mesh_layout(_config(**changes), devices)
    for name in names:
        assert name in err.value.message
    assert err.value.remediation


def test_config_rejects_two_remaining_axes() -> None:
    from nanochat_tui.config.loader import ConfigError

    with pytest.raises(ConfigError, match=r"only one of mesh\.data and mesh\.fsdp"):
        _config(**{"mesh.data": -1, "mesh.fsdp": -1})


def test_estimates_show_mesh_and_fsdp_memory() -> None:
    cfg = load_config("hundred", [])
    rows = {r.accelerator: r for r in compatibility_matrix(cfg)}
    h8 = rows["8× H100"].layout
    assert (h8.label, h8.device_batch, h8.global_batch, h8.accum) == ("8×1", 32, 256, 1)
    assert rows["1× H100"].layout.accum == 8
    sharded = load_config("hundred", ["mesh.data=1", "mesh.fsdp=8"])
    m1 = memory_estimate(cfg, "gpu", mesh_layout(cfg, 8))
    m8 = memory_estimate(sharded, "gpu", mesh_layout(sharded, 8))
    assert m8.params * 8 == m1.params and m8.optimizer * 8 == m1.optimizer
    assert m8.activations == m1.activations
    tiny = {r.accelerator: r for r in compatibility_matrix(load_config("tiny", []))}
    assert (
        tiny["8× H100"].layout is None and "train.total_batch_size" in tiny["8× H100"].layout_error
    )


def test_device_panel_rows_cover_every_device() -> None:
    from nanochat_tui.panels.store import MetricStore
    from nanochat_tui.telemetry.device import device_memory_rows

    accel = [
        {"id": i, "platform": "gpu", "bytes_in_use": (i + 1) * 2**30, "bytes_limit": 80 * 2**30}
        for i in range(8)
    ]
    store = MetricStore()
    store.ingest([{"type": "heartbeat", "time": 1.0, "step": 3, "device": {"accelerators": accel}}])
    rows = device_memory_rows(store.last_device)
    assert [label for label, _ in rows] == [f"gpu{i} mem" for i in range(8)]
    assert rows[7][1] == "8GB / 80GB"
    cpu = [{"id": i, "platform": "cpu", "bytes_in_use": None} for i in range(8)]
    assert device_memory_rows({"accelerators": cpu}) == []
    gpus = [{"index": 0, "mem_used_bytes": 2**30, "mem_total_bytes": 2**31}]
    assert device_memory_rows({"accelerators": cpu, "gpus": gpus}) == [("gpu0 mem", "1GB / 2GB")]
