"""Fabricated checkpoints (fixed dates) for the Checkpoints/Chat pane tests and snapshots."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from nanochat_tui.config import load_prefab
from nanochat_tui.rundir import meta_path, set_pinned

FIXED = datetime(2025, 1, 15, 9, 30).timestamp()


def our_meta(model: dict, step: int, run: str, val_bpb: float, **extra) -> dict:
    depth, aspect, head_dim = model["depth"], model["aspect_ratio"], model["head_dim"]
    dim = depth * aspect
    meta = {
        "step": step,
        "run_name": run,
        "stage": "base",
        "model": model,
        "model_dim": dim,
        "n_head": dim // head_dim,
        "n_kv_head": model.get("n_kv_head") or dim // head_dim,
        "vocab_size": model["vocab_size"],
        "sequence_len": model["sequence_len"],
        "tokenizer_hash": "0123456789abcdef",
        "val_bpb": val_bpb,
        "time": FIXED + step,
        "plugins": {"megacontext": False},
    }
    meta.update(extra)
    return meta


def make_run(runs: Path, name: str, model: dict, steps: list[int], **extra) -> Path:
    run_dir = runs / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(f"name: {name}\n")
    for step in steps:
        path = meta_path(run_dir / "checkpoints" / str(step))
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(our_meta(model, step, name, 2.5 - step / 1000, **extra)))
        state = run_dir / "checkpoints" / str(step) / "state"
        state.mkdir()
        (state / "_METADATA").write_text("{}")  # orbax's tree metadata (checkpoint_files.damage)
        (state / "data").write_bytes(b"\0" * (1000 * step))
    return run_dir


def make_nanochat(base: Path) -> Path:
    tag = base / "base_checkpoints" / "d12"
    tag.mkdir(parents=True)
    meta = {
        "step": 21400,
        "val_bpb": 0.8123,
        "model_config": {
            "sequence_len": 2048,
            "vocab_size": 65536,
            "n_layer": 12,
            "n_head": 6,
            "n_kv_head": 6,
            "n_embd": 768,
        },
    }
    path = tag / "meta_021400.json"
    path.write_text(json.dumps(meta))
    (tag / "model_021400.pt").write_bytes(b"\0" * 5000)
    import os

    os.utime(path, (FIXED, FIXED))
    return path


def populate(runs: Path, nanochat_base: Path) -> dict[str, Path]:
    """tiny-shaped run 'fits' (steps 100, 200), a d4 run 'deeper' (step 50), one nanochat d12."""
    import os
    import time

    tiny = load_prefab("tiny").model.model_dump()
    deeper = dict(tiny, depth=4)
    a = make_run(runs, "fits", tiny, [100, 200])
    b = make_run(runs, "deeper", deeper, [50], plugins={"megacontext": True})
    # step 200's val bpb comes from an eval at step 150 (stale); step 100 is pinned
    meta = meta_path(a / "checkpoints" / "200")
    data = json.loads(meta.read_text())
    data["reason"] = "interval"
    data["metrics"] = {
        "val_bpb": {"value": data["val_bpb"], "step": 150},
        "train_loss": {"value": 3.25, "step": 200},
    }
    meta.write_text(json.dumps(data))
    set_pinned(a, 100, True)
    # fixed order for list_run_dirs (newest first): fits newer than deeper
    now = time.time()
    os.utime(b, (now - 100, now - 100))
    os.utime(a, (now, now))
    make_nanochat(nanochat_base)
    return {"fits": a, "deeper": b}
