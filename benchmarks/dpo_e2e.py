"""End to end on CPU: pretrain → SFT → DPO on the embedded stdlib preference pairs.

A small nanochat is pretrained on the embedded corpus, fine-tuned on the embedded chat set, then
aligned with DPO (reference = the SFT checkpoint) on the embedded preference pairs (chosen = a
function's documented summary, rejected = another function's). Reported, on the held-out pairs:

- ``rewards/accuracies`` before DPO (the policy is the reference: every reward is 0, so TRL's
  strict accuracy is 0 and a coin flip 0.5) and after; also the reference-free preference
  accuracy (log π(chosen) > log π(rejected)) of the SFT model and of the DPO model;
- the SFT eval loss (assistant-token nats on the held-out chat set) of the SFT model and of the
  DPO model, and their difference against ``--max-sft-loss-rise``.

    uv run python benchmarks/dpo_e2e.py [--pretrain-steps 150] [--sft-steps 250]
        [--dpo-steps 40] [--beta 0.5] [--loss-type sigmoid] [--lr-multiplier 0.1]
        [--reference precomputed] [--max-sft-loss-rise 0.10]
    uv run python benchmarks/dpo_e2e.py --pipeline RUNS/NAME   # after `run tiny-align --name NAME`

Measured on a shared, loaded 2-core CPU (defaults; pretrain 549 s, SFT 489 s, DPO 184 s): held-out
accuracy 0.911 after 8 DPO steps, 0.989 after 40 (margin +4.30); SFT eval loss 1.715 → 1.754
(+0.039 nats, margin allowed +0.10). With β 0.1 and 0.25× lr for 120 steps accuracy reached 0.933
but the SFT eval loss rose by 0.448 nats: a small β lets the chosen log-probs fall far.

Exits 1 when held-out accuracy stays below ``--min-accuracy`` or the SFT loss rises too much.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NANOCHAT_TUI_HOME", tempfile.mkdtemp(prefix="nanochat-dpo-e2e-"))

MODEL = [
    "model.depth=2",
    "model.aspect_ratio=64",
    "model.head_dim=64",
    "model.sequence_len=128",
    "model.vocab_size=1024",
    "data.max_chars=1500000",
    "data.tokenizer_chars=300000",
]


def run(stage_args: list[str], run_dir: Path) -> tuple[float, list[dict]]:
    from nanochat_tui.config import load_config
    from nanochat_tui.jax_engine.train import train

    events: list[dict] = []

    def on_event(event: dict) -> None:
        events.append(event)
        if event["type"] == "eval" or (event["type"] == "step" and event["step"] % 25 == 0):
            shown = {k: v for k, v in event.items() if isinstance(v, float | int | str)}
            print(run_dir.name, shown, flush=True)

    t0 = time.perf_counter()
    result = train(load_config("tiny", [*MODEL, *stage_args]), run_dir, on_event)
    if result.status != "finished":
        sys.exit(f"{run_dir.name} {result.status}: {result.error}")
    return time.perf_counter() - t0, events


def load(run_dir: Path):
    """A run's final model, with its config and tokenizer."""
    from flax import nnx

    from nanochat_tui.config import load_config
    from nanochat_tui.jax_engine.checkpoint import resolve_step_dir, restore_into
    from nanochat_tui.jax_engine.model import GPT
    from nanochat_tui.jax_engine.tokenizer import Tokenizer

    config = load_config(str(run_dir / "config.yaml"))
    model = GPT(config.model, rngs=nnx.Rngs(0))
    restore_into(resolve_step_dir(run_dir), model)
    return model, config, Tokenizer.load(run_dir / "tokenizer.json")


def measure(run_dir: Path, sft_dir: Path, dpo_args: list[str] | Path) -> dict[str, float]:
    """Held-out preference metrics (reference = the SFT model) and the SFT eval loss.
    ``dpo_args``: overrides of the benchmark's model, or a DPO run's config.yaml."""
    import numpy as np

    from nanochat_tui.config import load_config
    from nanochat_tui.jax_engine.tasks.dpo import DPOTask
    from nanochat_tui.jax_engine.tasks.sft import SFTTask

    model, _, tok = load(run_dir)
    if isinstance(dpo_args, Path):
        dpo_config = load_config(str(dpo_args))
    else:
        dpo_config = load_config("tiny", [*MODEL, *dpo_args])
    dpo = DPOTask(dpo_config, tok, lambda m: None)
    dpo.prepare()
    pref = dpo.evaluate(model)
    sft_config = load_config(str(sft_dir / "config.yaml"))
    sft = SFTTask(sft_config, tok, lambda m: None)
    sft.prepare()
    from nanochat_tui.jax_engine.tasks.preference import all_stats

    s = all_stats(model, dpo.val, 8, dpo.row_len, tok.bos_id)
    return {
        "rewards/accuracies": pref["eval_rewards/accuracies"],
        "rewards/margins": pref["eval_rewards/margins"],
        "ref-free accuracy": float(np.mean(s.logp_c > s.logp_r)),
        "sft eval loss": sft.evaluate(model)["val_loss"],
        "held-out pairs": len(dpo.val),
    }


def wall_s(run_dir: Path) -> float:
    """Seconds from a run's first event to its run_end (start-up, training and evaluations)."""
    import json

    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    ends = [e["time"] for e in events if e["type"] == "run_end"]
    return (ends[-1] if ends else events[-1]["time"]) - events[0]["time"]


def report_pipeline(prefix: Path, min_accuracy: float, max_rise: float) -> int:
    """Measure a finished ``tiny-align`` pipeline (``PREFIX.2-sft``, ``PREFIX.3-dpo``)."""
    import json

    base = prefix.with_name(prefix.name + ".1-base")
    sft = prefix.with_name(prefix.name + ".2-sft")
    dpo = prefix.with_name(prefix.name + ".3-dpo")
    before = measure(sft, sft, dpo / "config.yaml")
    after = measure(dpo, sft, dpo / "config.yaml")
    print(f"\npipeline {prefix} (timings from a shared, loaded CPU machine)")
    for run_dir in (base, sft, dpo):
        print(f"  {run_dir.name:<16} {wall_s(run_dir):7.1f} s")
    print("\nheld-out eval during DPO (step: rewards/accuracies, rewards/margins, val_loss)")
    for line in (dpo / "events.jsonl").read_text().splitlines():
        e = json.loads(line)
        if e["type"] == "eval":
            print(f"  {e['step']:>5}: {e['eval_rewards/accuracies']:.3f}  "
                  f"{e['eval_rewards/margins']:+.3f}  {e['val_loss']:.4f}")  # fmt: skip
    return verdict(before, after, min_accuracy, max_rise)


def verdict(before: dict, after: dict, min_accuracy: float, max_rise: float) -> int:
    print(f"\n{'metric':<20} {'SFT (= reference)':>18} {'after DPO':>10}")
    for key in before:
        print(f"{key:<20} {before[key]:>18.4f} {after[key]:>10.4f}")
    print("(before DPO every implicit reward is 0: strict accuracy 0, a coin flip would be 0.5)")
    rise = after["sft eval loss"] - before["sft eval loss"]
    ok = after["rewards/accuracies"] >= min_accuracy and rise <= max_rise
    print(f"\nheld-out accuracy {after['rewards/accuracies']:.3f} (target ≥ {min_accuracy}); "
          f"SFT eval loss {rise:+.4f} nats (allowed ≤ +{max_rise}): "
          f"{'PASS' if ok else 'FAIL'}")  # fmt: skip
    return 0 if ok else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pretrain-steps", type=int, default=150)
    ap.add_argument("--sft-steps", type=int, default=250)
    ap.add_argument("--dpo-steps", type=int, default=40)
    ap.add_argument("--beta", type=float, default=0.5)
    ap.add_argument("--loss-type", default="sigmoid")
    ap.add_argument("--lr-multiplier", type=float, default=0.1)
    ap.add_argument("--reference", default="precomputed")
    ap.add_argument("--val-fraction", type=float, default=0.1)
    ap.add_argument("--min-accuracy", type=float, default=0.8)
    ap.add_argument("--max-sft-loss-rise", type=float, default=0.10)
    ap.add_argument("--out", type=Path, default=None, help="keep the runs here")
    ap.add_argument(
        "--pipeline",
        type=Path,
        default=None,
        metavar="RUNS/NAME",
        help="measure a finished `run tiny-align --name NAME` instead of training",
    )
    args = ap.parse_args()
    if args.pipeline is not None:
        return report_pipeline(args.pipeline, args.min_accuracy, args.max_sft_loss_rise)
    root = args.out or Path(tempfile.mkdtemp(prefix="dpo-e2e-"))
    base, sft, dpo = root / "base", root / "sft", root / "dpo"
    common = ["train.device_batch_size=16", "train.total_batch_size=2048", "train.save_every=0",
              "train.sample_every=0", "train.eval_every=0"]  # fmt: skip
    times = {}
    if not (base / "checkpoints").exists():
        times["pretrain"], _ = run(
            [*common, f"train.num_iterations={args.pretrain_steps}", "data.val_fraction=0.02"],
            base,
        )
    if not (sft / "checkpoints").exists():
        times["sft"], _ = run(
            [*common, "train.stage=sft", f"run.init_from={base}", "data.val_fraction=0.05",
             f"train.num_iterations={args.sft_steps}", "optim.warmdown_ratio=0.5"],
            sft,
        )  # fmt: skip
    dpo_args = [
        "train.stage=dpo", f"run.init_from={sft}", f"data.val_fraction={args.val_fraction}",
        f"pref.beta={args.beta}", f"pref.loss_type={args.loss_type}",
        f"pref.reference={args.reference}", "train.device_batch_size=8",
        "train.total_batch_size=1024", "train.save_every=0", "train.sample_every=0",
        f"train.eval_every={max(1, args.dpo_steps // 5)}", f"train.num_iterations={args.dpo_steps}",
        f"optim.lr_multiplier={args.lr_multiplier}", "optim.warmdown_ratio=0.5",
    ]  # fmt: skip
    before = measure(sft, sft, dpo_args)
    times["dpo"], events = run(dpo_args, dpo)
    after = measure(dpo, sft, dpo_args)

    print(f"\nruns in {root} (timings from a shared, loaded CPU machine)")
    for stage, seconds in times.items():
        print(f"  {stage:<9} {seconds:7.1f} s")
    print("\nheld-out eval during DPO (step: rewards/accuracies, rewards/margins)")
    for e in events:
        if e["type"] == "eval":
            print(f"  {e['step']:>5}: {e['eval_rewards/accuracies']:.3f}  "
                  f"{e['eval_rewards/margins']:+.3f}")  # fmt: skip
    return verdict(before, after, args.min_accuracy, args.max_sft_loss_rise)


if __name__ == "__main__":
    raise SystemExit(main())
