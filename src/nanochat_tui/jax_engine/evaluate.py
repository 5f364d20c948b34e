"""Bits per byte (nanochat's evaluate_bpb), the unigram baseline, and sample continuations.

bpb = Σ CE nats over target tokens / (ln 2 · Σ UTF-8 bytes of those tokens); special tokens (0
bytes) are excluded from both sums, so the number is comparable across tokenizers.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from nanochat_tui.jax_engine.data import unigram_bpb, val_batches

SAMPLE_PROMPTS = ("def ", "import ", "The ", "class ")


def eval_target_count(val: np.ndarray, seq_len: int, max_tokens: int) -> int:
    """How many val target tokens ``val_batches`` scores (they are val[1 : 1 + count])."""
    n = min((len(val) - 1) // seq_len, max(1, math.ceil(max_tokens / seq_len)))
    return n * seq_len if n >= 1 else len(val) - 1


def evaluate_bpb(
    model,
    val: np.ndarray,
    token_bytes: np.ndarray,
    *,
    seq_len: int,
    batch_size: int,
    max_tokens: int,
) -> dict[str, float]:
    """Validation loss (nats/token) and bits per byte on the first ``max_tokens`` val targets."""
    from nanochat_tui.jax_engine.step import eval_token_losses

    nats = 0.0
    nbytes = 0
    ntok = 0
    all_nats = 0.0
    for x, y in val_batches(val, seq_len, batch_size, max_tokens):
        losses = np.asarray(eval_token_losses(model, x, y), dtype=np.float64)
        b = token_bytes[y]
        mask = b > 0
        nats += float(losses[mask].sum())
        nbytes += int(b[mask].sum())
        all_nats += float(losses.sum())
        ntok += losses.size
    return {
        "val_bpb": nats / (math.log(2) * max(1, nbytes)),
        "val_loss": all_nats / max(1, ntok),
        "tokens": ntok,
    }


def unigram_baseline(
    train: np.ndarray, val: np.ndarray, token_bytes: np.ndarray, *, seq_len: int, max_tokens: int
) -> float:
    """Unigram-model bpb on exactly the val targets ``evaluate_bpb`` scores."""
    return unigram_bpb(train, val, token_bytes, eval_target_count(val, seq_len, max_tokens))


def sample_continuations(
    model,
    tokenizer,
    prompts: tuple[str, ...] | list[str] = SAMPLE_PROMPTS,
    *,
    max_new_tokens: int = 32,
    temperature: float = 0.8,
    top_k: int | None = 50,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """A continuation per prompt (each prompt starts after <|bos|>, like a training document)."""
    from nanochat_tui.jax_engine.sample import generate

    out = []
    limit = max(1, model.config.sequence_len - 1)
    for i, prompt in enumerate(prompts):
        ids = [tokenizer.bos_id, *tokenizer.encode(prompt)][-limit:]
        budget = max(1, min(max_new_tokens, model.config.sequence_len - len(ids)))
        new = list(
            generate(
                model,
                ids,
                max_new_tokens=budget,
                temperature=temperature,
                top_k=top_k,
                seed=seed + i,
                stop_ids=(tokenizer.bos_id,),
            )
        )
        new = [t for t in new if t != tokenizer.bos_id]
        out.append({"prompt": prompt, "completion": tokenizer.decode(new)})
    return out


def sample_replies(
    model: Any, tokenizer: Any, prompts: list[list[int]], seq_len: int, step: int
) -> list[dict[str, str]]:
    """An assistant reply to each prompt (ids ending with ``<|assistant_start|>``): the first
    greedy, the rest sampled (T 0.8, top-k 50), each stopping at ``<|assistant_end|>``."""
    from nanochat_tui.jax_engine.sample import generate

    stop = (tokenizer.special("<|assistant_end|>"), tokenizer.bos_id)
    out = []
    for i, prompt in enumerate(prompts):
        budget = min(48, seq_len - len(prompt))
        if budget < 1:
            continue
        new = list(
            generate(
                model, prompt, max_new_tokens=budget, temperature=0.0 if i == 0 else 0.8,
                top_k=50, seed=step + i, stop_ids=stop,
            )
        )  # fmt: skip
        out.append({"prompt": tokenizer.decode(prompt[1:]), "completion": tokenizer.decode(new)})
    return out
