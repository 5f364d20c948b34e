"""``nanochat-tui chat RUN_DIR`` (streaming REPL with tool use) and ``nanochat-tui eval RUN_DIR``
(val bpb + samples, or a task eval with ``--task``)."""

from __future__ import annotations

import argparse
import sys

from nanochat_tui.sampling_params import argparse_type


def add_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", help="run directory (latest checkpoint) or a checkpoint step directory"
    )
    parser.add_argument(
        "--temperature",
        type=argparse_type("temperature"),
        default=0.8,
        help="sampling temperature (0 = greedy)",
    )
    parser.add_argument(
        "--top-k",
        type=argparse_type("top_k"),
        default=50,
        help="sample from the k most likely tokens (0 = all)",
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    if name == "chat":
        parser.add_argument(
            "--max-tokens",
            type=argparse_type("max_tokens"),
            default=128,
            help="reply length limit in tokens",
        )
        parser.add_argument("--prompt", help="send one message, print the reply and exit")
        parser.add_argument(
            "--complete", action="store_true", help="plain text continuation, no chat format"
        )
        parser.add_argument(
            "--interface",
            metavar="FILE",
            help="interface.json whose user tools the model may call (default: the run's "
            "project SOUL version, if it recorded one)",
        )
        parser.add_argument(
            "--allow-tools",
            action="store_true",
            help="run user tools without asking (the calculator always runs)",
        )
        parser.add_argument(
            "--no-tools", action="store_true", help="do not execute tool calls at all"
        )
    else:
        parser.add_argument(
            "--max-tokens",
            type=argparse_type("max_tokens"),
            default=48,
            help="tokens per sample continuation",
        )
        parser.add_argument(
            "--tokens", type=int, default=0, help="val tokens to score (default train.eval_tokens)"
        )
        parser.add_argument(
            "--prompts", nargs="*", help="prompts to continue (default: a few fixed ones)"
        )
        parser.add_argument(
            "--task",
            metavar="NAME|FILE.jsonl",
            help="score a task instead (stdlib-modules, or a JSONL file in nanochat's CORE, "
            "ARC, MMLU or GSM8K format); saved to RUN/evals/<task>/step_N.json",
        )
        parser.add_argument(
            "--split",
            default="test",
            help="embedded task split: test (held out of SFT), train, all",
        )
        parser.add_argument("--limit", type=int, default=0, help="score only the first N items")
        parser.add_argument(
            "--every-checkpoint",
            action="store_true",
            help="with --task: score every checkpoint of the run, not only the latest",
        )


def run(args: argparse.Namespace) -> int:
    return _eval(args) if args.command == "eval" else _chat(args)


def _load(path: str):
    from nanochat_tui.jax_engine.inference import ChatModel

    print(f"loading {path} …", file=sys.stderr, flush=True)
    from nanochat_tui.orchestrator.plugin_hooks import model_mlp

    model = ChatModel.load(path, mlp_for=model_mlp)
    print(f"checkpoint step {model.step} · {model.path}", file=sys.stderr, flush=True)
    return model


def _tool_runner(args: argparse.Namespace, model):
    """The calculator plus the interface's user tools; each user tool call asks first unless
    --allow-tools (without a terminal to ask on, it is refused)."""
    from nanochat_tui.align.tool_exec import ToolRunner, interface_for_run, load_interface

    if args.no_tools:
        return None
    path = args.interface or interface_for_run(
        model.meta.get("config") or {}, model.path.parent.parent
    )
    tools = load_interface(path) if path else {}
    if tools:
        print(f"user tools from {path}: {', '.join(tools)}", file=sys.stderr)

    def confirm(call) -> bool:
        if args.allow_tools:
            return True
        if not sys.stdin.isatty():
            print(f"\n[refused {call.tool}: pass --allow-tools]", file=sys.stderr)
            return False
        answer = input(f"\n[tool] {call.describe()}\nrun it? [y/N] ")
        return answer.strip().lower() in ("y", "yes")

    return ToolRunner(tools, confirm)


SHOW = {"python": ("\x1b[33m⟦call ", "⟧\x1b[0m"), "output": ("\x1b[35m⟦output ", "⟧\x1b[0m")}


def _show(kind: str, piece: str, state: dict) -> None:
    """Print a streamed piece; a tool call and its output are bracketed (coloured on a tty)."""
    tty = sys.stdout.isatty()
    if kind != state.get("kind"):
        if state.get("kind") in SHOW:
            print(SHOW[state["kind"]][1] if tty else "]", end="")
        if kind in SHOW:
            print(SHOW[kind][0] if tty else f"[{kind} ", end="")
        state["kind"] = kind
    print(piece, end="", flush=True)


def assistant_content(pieces: list[tuple[str, str]]) -> str | list[dict]:
    """The reply as chat content: a string, or nanochat parts when it called a tool."""
    parts: list[dict] = []
    kinds = {"text": "text", "python": "python", "output": "python_output"}
    for kind, piece in pieces:
        if parts and parts[-1]["type"] == kinds[kind]:
            parts[-1]["text"] += piece
        else:
            parts.append({"type": kinds[kind], "text": piece})
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def _chat(args: argparse.Namespace) -> int:
    model = _load(args.path)
    kwargs = dict(max_tokens=args.max_tokens, temperature=args.temperature, top_k=args.top_k)
    tools = None if args.complete else _tool_runner(args, model)

    def reply(messages: list[dict], seed: int, text: str) -> str | list[dict]:
        if args.complete:
            stream = (("text", p) for p in model.complete(text, seed=seed, **kwargs))
        else:
            stream = model.chat_turn(messages, tools=tools, seed=seed, **kwargs)
        pieces: list[tuple[str, str]] = []
        state: dict = {}
        for kind, piece in stream:
            pieces.append((kind, piece))
            _show(kind, piece, state)
        _show("text", "", state)
        s = model.last_stats
        tps = f"{s['tokens_per_s']:.1f} tok/s" if s.get("tokens_per_s") else "-"
        print(f"\n[{s.get('completion_tokens', 0)} tokens · {tps}]", file=sys.stderr, flush=True)
        return assistant_content(pieces)

    if args.prompt is not None:
        reply([{"role": "user", "content": args.prompt}], args.seed, args.prompt)
        return 0
    print("chat: type a message; /reset clears the conversation, /exit quits", file=sys.stderr)
    messages: list[dict] = []
    turn = 0
    while True:
        try:
            text = input("you> ")
        except EOFError:
            print()
            return 0
        cmd = text.strip()
        if cmd in ("/exit", "/quit"):
            return 0
        if cmd == "/reset":
            messages = []
            print("(conversation cleared)", file=sys.stderr)
            continue
        if not cmd:
            continue
        messages.append({"role": "user", "content": text})
        print("bot> ", end="", flush=True)
        answer = reply(messages, args.seed + turn, text)
        messages.append({"role": "assistant", "content": answer})
        turn += 1


def _eval(args: argparse.Namespace) -> int:
    if args.task:
        return _eval_task(args)
    from nanochat_tui.jax_engine.data import build_splits
    from nanochat_tui.jax_engine.evaluate import (
        SAMPLE_PROMPTS,
        evaluate_bpb,
        sample_continuations,
        unigram_baseline,
    )

    cm = _load(args.path)
    config = cm.config
    seq = config.model.sequence_len
    max_tokens = args.tokens or config.train.eval_tokens
    splits = build_splits(config, cm.tokenizer, log=lambda m: print(m, file=sys.stderr))
    token_bytes = cm.tokenizer.token_bytes()
    if len(token_bytes) < config.model.vocab_size:
        import numpy as np

        token_bytes = np.pad(token_bytes, (0, config.model.vocab_size - len(token_bytes)))
    res = evaluate_bpb(
        cm.model,
        splits.val,
        token_bytes,
        seq_len=seq,
        batch_size=config.train.device_batch_size,
        max_tokens=max_tokens,
    )
    uni = unigram_baseline(
        splits.train, splits.val, token_bytes, seq_len=seq, max_tokens=max_tokens
    )
    print(f"step {cm.step}")
    print(
        f"val bpb      {res['val_bpb']:.4f}   ({res['tokens']:,} tokens, val loss {res['val_loss']:.4f} nats)"
    )
    print(f"unigram bpb  {uni:.4f}   (same val tokens; lower is better)")
    samples = sample_continuations(
        cm.model,
        cm.tokenizer,
        args.prompts or SAMPLE_PROMPTS,
        max_new_tokens=args.max_tokens,
        temperature=args.temperature,
        top_k=args.top_k or None,
        seed=args.seed,
    )
    print("samples:")
    for s in samples:
        print(f"--- {s['prompt']!r}\n{s['prompt']}{s['completion']}")
    return 0


def _eval_task(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nanochat_tui import rundir
    from nanochat_tui.align.tasks import load_task

    task = load_task(args.task, args.split)
    path = Path(args.path).expanduser()
    targets = [path]
    if args.every_checkpoint and rundir.is_run_dir(path):
        targets = [info.path for info in rundir.list_checkpoints(path)] or [path]
    for target in targets:
        cm = _load(str(target))
        run_task(cm, task, limit=args.limit, max_new_tokens=args.max_tokens)
    return 0


def run_task(cm, task, *, limit: int = 0, max_new_tokens: int = 128) -> dict:
    """Score a loaded ChatModel on ``task``, save the result in its run dir and print a line."""
    from nanochat_tui.jax_engine.task_eval import evaluate_task, save_result

    result = evaluate_task(
        cm.model,
        cm.tokenizer,
        task,
        seq_len=cm.config.model.sequence_len,
        limit=limit,
        max_new_tokens=max_new_tokens,
    )
    run_dir = cm.path.parent.parent
    saved = save_result(run_dir, result, step=cm.step, stage=cm.config.train.stage)
    extra = f" · gold nll {result['mean_gold_nll']:.3f}" if "mean_gold_nll" in result else ""
    print(
        f"{task.name} step {cm.step} ({cm.config.train.stage}): accuracy "
        f"{result['accuracy']:.3f} ({result['correct']}/{result['n']}){extra} → {saved}"
    )
    return result
