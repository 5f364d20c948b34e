"""A tiny MoE (8 experts, top-2) against the dense model with the same active parameters, on CPU:
training tokens/s and validation bits per byte after the same number of tokens.

The MoE's expert width defaults to 4·model_dim / top_k, so a token runs exactly as many MLP
parameters as in the dense model (plus a d×E router). Both runs go through the orchestrator
(plugin engine hooks included), same seed, data and schedule.

    uv run python benchmarks/moe_vs_dense.py [--steps 40] [--depth 2] [--experts 8] [--top-k 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path


def run(label: str, overrides: dict, steps: int, home: Path) -> dict:
    from nanochat_tui.config import load_config
    from nanochat_tui.orchestrator.runner import execute

    events: list[dict] = []
    config = load_config("tiny", {**overrides, "train.num_iterations": steps})
    result = execute(config, home / label, callbacks=[events.append])
    rates = [e["tokens_per_s"] for e in events if e["type"] == "step" and e.get("tokens_per_s")]
    start = next(e for e in events if e["type"] == "run_start")
    return {
        "label": label,
        "tok_s": statistics.median(rates[2:] or rates),
        "val_bpb": result.final_val_bpb,
        "tokens": steps * config.train.total_batch_size,
        "params": start["num_params"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--top-k", type=int, default=2)
    ap.add_argument("--capacity", type=float, default=1.25)
    args = ap.parse_args()
    import os

    home = Path(tempfile.mkdtemp(prefix="moe-bench-"))
    os.environ.setdefault("NANOCHAT_TUI_HOME", str(home))
    base = {
        "model.depth": args.depth,
        "model.sequence_len": 128,
        "model.vocab_size": 2048,
        "data.max_chars": 1_000_000,
        "data.tokenizer_chars": 200_000,
        "train.device_batch_size": 8,
        "train.total_batch_size": 1024,
        "train.eval_every": 0,
        "train.eval_tokens": 16384,
        "train.sample_every": 0,
        "train.save_every": 0,
    }
    moe = {
        **base,
        "plugins.moe": {
            "num_experts": args.experts,
            "top_k": args.top_k,
            "capacity_factor": args.capacity,
        },
    }
    from nanochat_tui.bundled.moe.estimates import moe_estimates
    from nanochat_tui.config import load_config

    est = moe_estimates(load_config("tiny", moe))
    rows = [run("dense", base, args.steps, home), run("moe", moe, args.steps, home)]
    rows[1]["params"] = f"{est.active_params} active / {est.total_params} total"
    print(f"\n{args.steps} steps × {rows[0]['tokens'] // args.steps} tokens, depth {args.depth}, "
          f"MoE {args.experts} experts top-{args.top_k}, capacity {args.capacity}")  # fmt: skip
    print(f"{'model':<6} {'tokens/s':>10} {'val bpb':>8}  params")
    for r in rows:
        print(f"{r['label']:<6} {r['tok_s']:>10.0f} {r['val_bpb']:>8.4f}  {r['params']}")


if __name__ == "__main__":
    main()
