"""Score a model on an evaluation task (align/tasks.py) and save the result in its run directory.

Choice items: every choice is appended to the prompt (chat-rendered, or plain text after
``<|bos|>``), the shared token prefix is found as CORE does, and the choice's score is the mean
negative log-likelihood of its own tokens; the pick is the lowest. Generative items: greedy decoding
of the assistant turn (calculator calls run, as in nanochat's GSM8K eval) and an exact match of the
``#### `` number. Results: ``RUN/evals/<task>/step_<N>.json`` (atomic write).
"""

from __future__ import annotations

import json
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from nanochat_tui import rundir
from nanochat_tui.align.chat import render_for_completion
from nanochat_tui.align.tasks import ChoiceItem, GenerativeItem, TaskSet, extract_answer
from nanochat_tui.jax_engine.model import GPT

_NLL: weakref.WeakKeyDictionary[GPT, Callable] = weakref.WeakKeyDictionary()


def _token_nll(model: GPT) -> Callable:
    """jitted ``nll(state, ids[B, T]) -> float32[B, T-1]``: −log p(ids[t+1] | ids[..t])."""
    if (fn := _NLL.get(model)) is not None:
        return fn
    graphdef = nnx.graphdef(model)

    @jax.jit
    def nll(state, ids):
        logits = nnx.merge(graphdef, state)(ids[:, :-1]).astype(jnp.float32)
        logp = jax.nn.log_softmax(logits, axis=-1)
        return -jnp.take_along_axis(logp, ids[:, 1:, None], axis=-1)[..., 0]

    _NLL[model] = nll
    return nll


def _bucket(n: int) -> int:
    return max(16, 1 << (n - 1).bit_length())


def choice_sequences(tokenizer: Any, item: ChoiceItem) -> tuple[list[list[int]], int]:
    """The full id sequence of each choice and where the choices start (the common prefix)."""
    if isinstance(item.prompt, str):
        seqs = [[tokenizer.bos_id, *tokenizer.encode(item.prompt + c)] for c in item.choices]
    else:
        prompt = render_for_completion(tokenizer, {"messages": item.prompt})
        seqs = [[*prompt, *tokenizer.encode(c)] for c in item.choices]
    start = 0
    while all(start < len(s) - 1 for s in seqs) and len({s[start] for s in seqs}) == 1:
        start += 1
    return seqs, start


def score_choices(model: GPT, tokenizer: Any, item: ChoiceItem, seq_len: int) -> list[float]:
    """Mean NLL (nats/token) of each choice's tokens after the shared prefix; a sequence longer
    than ``seq_len`` keeps its last ``seq_len`` tokens (its choice is always scored)."""
    seqs, start = choice_sequences(tokenizer, item)
    starts = [max(1, start - max(0, len(s) - seq_len)) for s in seqs]
    seqs = [s[-seq_len:] for s in seqs]
    length = min(_bucket(max(len(s) for s in seqs)), seq_len)
    ids = np.zeros((len(seqs), length), np.int32)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
    nll = np.asarray(_token_nll(model)(nnx.state(model), jnp.asarray(ids)))
    # position t-1 predicts token t: a choice's tokens are start .. len(s)-1
    return [
        float(nll[i, b - 1 : len(s) - 1].mean())
        for i, (s, b) in enumerate(zip(seqs, starts, strict=True))
    ]


def generate_answer(
    model: GPT, tokenizer: Any, item: GenerativeItem, *, max_new_tokens: int, seq_len: int
) -> str:
    """The greedy assistant reply to ``item.messages`` with the calculator running its calls."""
    from nanochat_tui.align.tool_exec import ToolRunner
    from nanochat_tui.jax_engine.inference import TokenToolHook
    from nanochat_tui.jax_engine.sample import generate

    prompt = render_for_completion(tokenizer, {"messages": item.messages})
    budget = max(1, min(max_new_tokens, seq_len - 1))
    prompt = prompt[-(seq_len - budget) :]
    stops = (tokenizer.special("assistant_end"), tokenizer.bos_id)
    out = generate(
        model,
        prompt,
        max_new_tokens=budget,
        temperature=0.0,
        stop_ids=stops,
        tools=TokenToolHook(tokenizer, ToolRunner()),
    )
    return tokenizer.decode(list(out))


def evaluate_task(
    model: GPT,
    tokenizer: Any,
    task: TaskSet,
    *,
    seq_len: int,
    limit: int = 0,
    max_new_tokens: int = 128,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Accuracy on ``task`` (the first ``limit`` items when > 0) with per-item picks."""
    items = task.items[:limit] if limit > 0 else task.items
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    gold_nll: list[float] = []
    for n, item in enumerate(items):
        if isinstance(item, ChoiceItem):
            scores = score_choices(model, tokenizer, item, seq_len)
            pick = int(np.argmin(scores))
            gold_nll.append(scores[item.gold])
            rows.append({"pick": pick, "gold": item.gold, "correct": pick == item.gold})
        else:
            reply = generate_answer(
                model, tokenizer, item, max_new_tokens=max_new_tokens, seq_len=seq_len
            )
            got = extract_answer(reply)
            rows.append({"answer": got, "gold": item.answer, "correct": got == item.answer})
        if progress is not None:
            progress(n + 1, len(items))
    correct = sum(r["correct"] for r in rows)
    result: dict[str, Any] = {
        "task": task.name,
        "kind": task.kind,
        "source": task.source,
        "n": len(rows),
        "correct": correct,
        "accuracy": correct / len(rows) if rows else 0.0,
        "seconds": round(time.perf_counter() - start, 3),
        "items": rows,
    }
    if gold_nll:
        result["mean_gold_nll"] = float(np.mean(gold_nll))
    return result


def save_result(run_dir: Path, result: dict[str, Any], *, step: int, stage: str) -> Path:
    """Write ``RUN/evals/<task>/step_<N>.json`` atomically (tmp + rename) and return its path."""
    folder = Path(run_dir) / "evals" / result["task"]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step_{step}.json"
    record = {**result, "step": step, "stage": stage, "time": time.time()}
    rundir.write_atomic(path, json.dumps(record, indent=1))
    return path


def assistant_loss(
    model: GPT, tokens: list[tuple[list[int], list[int]]], seq_len: int
) -> tuple[float, int]:
    """Mean NLL (nats) over the supervised (assistant) tokens of rendered conversations
    ``(ids, mask)`` (align/chat.py), each scored alone; returns ``(loss, tokens scored)``."""
    nll_fn, state = _token_nll(model), nnx.state(model)
    total, count = 0.0, 0
    for ids, mask in tokens:
        ids, mask = ids[: seq_len + 1], mask[: seq_len + 1]
        padded = np.zeros((1, min(_bucket(len(ids)), seq_len + 1)), np.int32)
        padded[0, : len(ids)] = ids
        nll = np.asarray(nll_fn(state, jnp.asarray(padded)))[0, : len(ids) - 1]
        weights = np.asarray(mask[1:], np.float64)
        total += float((nll * weights).sum())
        count += int(weights.sum())
    return total / max(count, 1), count
