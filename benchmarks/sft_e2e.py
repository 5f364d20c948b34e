"""End to end: `tiny-chat` (pretrain → SFT on the embedded data) on this machine, then base vs
SFT on what SFT should change.

- the embedded task eval ``stdlib-modules`` (test split: names whose questions SFT never saw),
  accuracy and mean NLL of the right choice;
- assistant-token loss on the SFT set's held-out conversations (``data.val_fraction`` 0.05);
- the chat format: how many sampled replies (temperature 0.8, top-k 50, up to 128 tokens) end
  the turn with ``<|assistant_end|>``.

    uv run python benchmarks/sft_e2e.py [--runs-dir DIR] [--reuse NAME] [--quick]

``--quick`` shrinks both steps (a smoke run, not the acceptance numbers). Results are saved in the
runs (RUN/evals/...) so the Evals pane shows them, and printed as a table plus one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NANOCHAT_TUI_HOME", tempfile.mkdtemp(prefix="nanochat-sft-e2e-"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--runs-dir", default=None, help="where the two runs go (default: a tmp dir)"
    )
    parser.add_argument(
        "--reuse", metavar="NAME", help="skip training: use runs NAME.1-base/.2-sft"
    )
    parser.add_argument("--quick", action="store_true", help="a few steps only (smoke test)")
    parser.add_argument(
        "--samples", type=int, default=40, help="sampled replies for the format check"
    )
    args = parser.parse_args()

    from nanochat_tui.align.chat import normalize, render
    from nanochat_tui.align.embedded import embedded_conversations, held_out
    from nanochat_tui.align.tasks import SFT_VAL_FRACTION, load_task
    from nanochat_tui.config import load_config
    from nanochat_tui.jax_engine.inference import ChatModel
    from nanochat_tui.jax_engine.sample import generate
    from nanochat_tui.jax_engine.task_eval import assistant_loss, evaluate_task, save_result
    from nanochat_tui.orchestrator.pipeline import run_pipeline

    runs = Path(args.runs_dir or Path(os.environ["NANOCHAT_TUI_HOME"]) / "runs")
    name = args.reuse or f"e2e-{time.strftime('%H%M%S')}"
    overrides = [f"run.runs_dir={runs}"]
    if args.quick:
        overrides += ["train.num_iterations=20", "train.eval_every=0", "train.sample_every=0"]
    config = load_config("tiny-chat", overrides)
    if args.quick:
        for step in config.pipeline:
            step.set.update({"train.num_iterations": 20, "train.eval_every": 0})
    t0 = time.perf_counter()
    if not args.reuse:
        done = run_pipeline(config, name)
        if any(result.status != "finished" for _, result in done):
            print(f"pipeline did not finish: {[r.status for _, r in done]}", file=sys.stderr)
            return 1
    train_s = time.perf_counter() - t0
    base_dir, sft_dir = runs / f"{name}.1-base", runs / f"{name}.2-sft"

    task = load_task("stdlib-modules")
    val = [
        c
        for c in embedded_conversations()
        if held_out(c["messages"][0]["content"], SFT_VAL_FRACTION)
    ]
    rows = {}
    for label, run_dir in (("base", base_dir), ("sft", sft_dir)):
        cm = ChatModel.load(run_dir)
        seq = cm.config.model.sequence_len
        result = evaluate_task(cm.model, cm.tokenizer, task, seq_len=seq)
        save_result(run_dir, result, step=cm.step, stage=cm.config.train.stage)
        rendered = [render(cm.tokenizer, normalize(c)) for c in val]
        loss, n_tokens = assistant_loss(cm.model, rendered, seq)
        end_id = cm.tokenizer.special("assistant_end")
        ended = 0
        questions = [c for c in val if isinstance(c["messages"][1]["content"], str)]
        for i in range(args.samples):
            conv = questions[i % len(questions)]
            prompt = cm.tokenizer.render_conversation(conv["messages"][:1], for_completion=True)
            out = list(
                generate(
                    cm.model, prompt, max_new_tokens=128, temperature=0.8, top_k=50, seed=i,
                    stop_ids=(end_id,),
                )
            )  # fmt: skip
            ended += len(out) < 128  # the stream stops only on <|assistant_end|>
        rows[label] = {
            "step": cm.step,
            "task_accuracy": result["accuracy"],
            "task_items": result["n"],
            "gold_nll": result["mean_gold_nll"],
            "assistant_loss": loss,
            "assistant_tokens": n_tokens,
            "ends_turn": ended / args.samples,
        }
    print(f"tiny-chat pipeline: {train_s / 60:.1f} min of training ({base_dir.parent})")
    print(
        f"{'':6} {'step':>5} {'stdlib-modules acc':>19} {'gold nll':>9} {'asst loss':>10} {'ends turn':>10}"
    )
    for label, r in rows.items():
        print(
            f"{label:6} {r['step']:>5} {r['task_accuracy']:>12.3f} ({r['task_items']} items) "
            f"{r['gold_nll']:>9.3f} {r['assistant_loss']:>10.3f} {r['ends_turn']:>10.0%}"
        )
    print(json.dumps({"train_minutes": round(train_s / 60, 2), **rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
