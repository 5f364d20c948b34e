"""Run tiny trainings on a chosen mesh in a process of its own (the device count is fixed when JAX
starts, so tests/test_sharding.py runs this with ``JAX_NUM_CPU_DEVICES=8``).

    python tests/sharding_worker.py SPEC_JSON

SPEC_JSON: ``{"root", "runs": [{"name", "mesh": [data, fsdp], "steps", "from", "set": {...}}]}``;
each run trains ``root/<name>``, or with ``from`` copies ``root/<from>`` there and resumes it; the
worker prints one ``RESULT`` JSON line mapping names to their losses, devices and accumulation.
A run with ``"init": true`` trains nothing: it compares the model built on the mesh
(``Placement.build_sharded``) with one built eagerly on one device from the same seed.
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


def compare_init(spec: dict) -> dict:
    """The largest difference between the mesh-built and the eagerly built parameters (and
    between their losses on one batch), and whether every array has its mesh sharding."""
    import jax
    import numpy as np
    from flax import nnx

    from nanochat_tui.config import load_config
    from nanochat_tui.jax_engine.model import GPT, token_losses
    from nanochat_tui.jax_engine.optim import build_optimizer
    from nanochat_tui.jax_engine.sharding import Placement, make_mesh

    data, fsdp = spec["mesh"]
    changes = {**SHARDED, "mesh.data": data, "mesh.fsdp": fsdp, **spec.get("set", {})}
    config = load_config("tiny", tiny_overrides(changes))
    place = Placement(*make_mesh(config))

    def make():
        model = GPT(config.model, rngs=nnx.Rngs(config.train.seed))
        return model, nnx.Optimizer(model, build_optimizer(model, config), wrt=nnx.Param)

    model, optimizer = place.build_sharded(make)
    eager = GPT(config.model, rngs=nnx.Rngs(config.train.seed))
    built = jax.tree.leaves(nnx.state(model, nnx.Param))
    want = jax.tree.leaves(nnx.state(eager, nnx.Param))
    diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(built, want, strict=True))  # fmt: skip
    arrays = jax.tree.leaves(nnx.state(model)) + jax.tree.leaves(nnx.state(optimizer))
    laid_out = all(a.sharding.is_equivalent_to(place.sharding(a.shape), a.ndim) for a in arrays)
    split = sum(len(a.sharding.device_set) == place.size and not a.sharding.is_fully_replicated for a in arrays)  # fmt: skip
    rng = np.random.default_rng(0)
    x = rng.integers(0, config.model.vocab_size, (8, config.model.sequence_len), dtype=np.int32)
    y = np.roll(x, -1, axis=1)
    loss = [float(np.mean(token_losses(m, x, y))) for m in (model, eager)]
    return {"max_diff": diff, "laid_out": laid_out, "split_arrays": split, "losses": loss}


def main() -> None:
    spec = json.loads(sys.argv[1])
    root = Path(spec["root"])
    out = {}
    for item in spec["runs"]:
        out[item["name"]] = compare_init(item) if item.get("init") else run(root, item)
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
    # Leave without the interpreter's teardown, like the CLI does once JAX is loaded (cli.py
    # `_leave`): XLA's native threads can abort a finished process there (CI saw
    # "FATAL: exception not rethrown", exit -6, after RESULT was printed).
    import os

    sys.stderr.flush()
    os._exit(0)
