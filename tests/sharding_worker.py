"""Run tiny trainings on a chosen mesh in a process of its own (the device count is fixed when JAX
starts, so tests/test_sharding.py runs this with ``JAX_NUM_CPU_DEVICES=8``).

    python tests/sharding_worker.py SPEC_JSON

SPEC_JSON: ``{"root", "runs": [{"name", "mesh": [data, fsdp], "steps", "from", "set": {...}}]}``;
each run trains ``root/<name>``, or with ``from`` copies ``root/<from>`` there and resumes it; the
worker prints one ``RESULT`` JSON line mapping names to their losses, devices and accumulation.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from helpers import tiny_overrides

# 8 rows of 64 tokens a step: one micro-batch of 8 on 8 devices, 8 micro-batches of 1 on one.
SHARDED = {
    "train.device_batch_size": 1,
    "train.total_batch_size": 512,
    "optim.warmdown_ratio": 0.0,  # a constant lr: a run cut short continues the longer one exactly
}


def run(root: Path, spec: dict) -> dict:
    from nanochat_tui.config import load_config
    from nanochat_tui.jax_engine.train import train

    data, fsdp = spec["mesh"]
    changes = {
        **SHARDED,
        "mesh.data": data,
        "mesh.fsdp": fsdp,
        "train.num_iterations": spec["steps"],
        **spec.get("set", {}),
    }
    config = load_config("tiny", tiny_overrides(changes))
    events: list[dict] = []
    run_dir = root / spec["name"]
    if spec.get("from"):
        shutil.copytree(root / spec["from"], run_dir)
    result = train(config, run_dir, events.append, None, bool(spec.get("from")))
    steps = [e for e in events if e["type"] == "step"]
    start = next(e for e in events if e["type"] == "run_start")
    return {
        "losses": [e["loss"] for e in steps],
        "devices_used": start["devices_used"],
        "grad_accum_steps": start["grad_accum_steps"],
        "step": result.step,
        "status": result.status,
        "error": result.error,
    }


def main() -> None:
    spec = json.loads(sys.argv[1])
    root = Path(spec["root"])
    out = {}
    for item in spec["runs"]:
        out[item["name"]] = run(root, item)
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
    # Leave without the interpreter's teardown, like the CLI does once JAX is loaded (cli.py
    # `_leave`): XLA's native threads can abort a finished process there (CI saw
    # "FATAL: exception not rethrown", exit -6, after RESULT was printed).
    import os

    sys.stderr.flush()
    os._exit(0)
