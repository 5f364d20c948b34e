"""Supervised fine-tuning on conversations: loss only on the assistant's tokens.

Data (``data.source``): ``embedded`` = the built-in chat set (align/embedded.py), or a path to a
JSONL file of conversations (align/chat.py gives the format and the checks). Conversations are
rendered in nanochat's chat format and held out for validation by a hash (``data.val_fraction``).
Each epoch shuffles the training conversations (seeded by ``train.seed`` and the epoch) and packs
them best-fit into rows of ``sequence_len + 1`` tokens; the position ``{"epoch", "row"}`` restores
the exact order on resume. Targets are −1 off the assistant tokens, so the shared token loss sums
exactly the supervised tokens (token-weighted across micro-batches). Evaluation: assistant-token
loss (nats) and bits per byte on the held-out conversations.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from nanochat_tui.align.chat import Rendered, load_conversations, normalize, render
from nanochat_tui.align.embedded import embedded_conversations, held_out
from nanochat_tui.align.interface import Interface
from nanochat_tui.align.packing import best_fit, collate
from nanochat_tui.align.soul import Soul
from nanochat_tui.errors import UserError
from nanochat_tui.jax_engine.evaluate import sample_replies
from nanochat_tui.jax_engine.sharding import placement
from nanochat_tui.jax_engine.step import token_loss_sum
from nanochat_tui.jax_engine.tasks import Task, dataset_identity
from nanochat_tui.projects import soul_for


def _embedded(
    tokenizer: Any, max_tokens: int, soul: Soul, interface: Interface
) -> tuple[list[Rendered], list[str], int]:
    """The embedded set rendered (identity from ``soul`` and ``interface``), its split keys, and
    how many conversations were too long."""
    out, keys, skipped = [], [], 0
    for conv in embedded_conversations(soul, interface):
        ids, mask = render(tokenizer, normalize(conv))
        if len(ids) > max_tokens:
            skipped += 1
            continue
        out.append(Rendered(ids, mask, 0))
        keys.append(conv["messages"][0]["content"])
    return out, keys, skipped


class SFTBatches:
    """Packed rows of training conversations, ``M × B`` per step, from a resumable position."""

    def __init__(self, task: SFTTask, position: dict[str, Any] | None) -> None:
        self.task = task
        pos = position or {"epoch": 0, "row": 0}
        self._epoch, self._row = int(pos["epoch"]), int(pos["row"])
        self.position = {"epoch": self._epoch, "row": self._row}
        self.data_wait = 0.0
        self._rows: dict[int, list[list[int]]] = {}

    def rows(self, epoch: int) -> list[list[int]]:
        """The packed rows of ``epoch`` (cached for the current one)."""
        if epoch not in self._rows:
            self._rows = {epoch: self.task.pack_epoch(epoch)}
        return self._rows[epoch]

    def next(self) -> tuple[Any, Any]:
        start = time.perf_counter()
        config = self.task.config
        bsz, accum = config.train.device_batch_size, config.grad_accum_steps
        chosen = []
        for _ in range(bsz * accum):
            if self._row >= len(self.rows(self._epoch)):
                self._epoch, self._row = self._epoch + 1, 0
            chosen.append(self.rows(self._epoch)[self._row])
            self._row += 1
        x, y = self.task.collate(chosen)
        out = placement(config).put_batch(x, y)
        self.position = {"epoch": self._epoch, "row": self._row}
        self.data_wait += time.perf_counter() - start
        return out

    def close(self) -> None:
        """Nothing runs in the background."""

    @property
    def epoch_fraction(self) -> float:
        return self._epoch + self._row / max(1, len(self.rows(self._epoch)))


class SFTTask(Task):
    """Chat SFT: packed conversations, assistant-only loss, held-out assistant-token loss."""

    stage = "sft"
    loss = staticmethod(token_loss_sum)

    @property
    def row_len(self) -> int:
        return self.config.model.sequence_len + 1

    def prepare(self) -> dict[str, Any]:
        data = self.config.data
        if not self.config.run.init_from:
            self.log(
                "sft from random weights: set run.init_from to a pretrained run to fine-tune it"
            )
        if data.source == "embedded":
            soul, interface = soul_for(self.config)
            convs, keys, skipped = _embedded(self.tokenizer, self.row_len, soul, interface)
            version = self.config.align.soul_version or "latest"
            where = f"the embedded chat set (SOUL {self.config.align.project}/{version})"
            if skipped:
                self.log(f"{skipped} embedded conversations are longer than sequence_len: skipped")
        else:
            path = Path(data.source).expanduser()
            if path.is_dir() or path.suffix != ".jsonl":
                raise UserError(
                    f"the sft stage reads conversations from a .jsonl file, not {path}",
                    'set data.source to a JSONL file of {"messages": [...]} lines, or "embedded"',
                )
            convs = load_conversations(path, self.tokenizer, self.row_len)
            keys = [json.dumps(c.ids) for c in convs]
            where = str(path.resolve())
        val = [c for c, k in zip(convs, keys, strict=True) if held_out(k, data.val_fraction)]
        train = [c for c, k in zip(convs, keys, strict=True) if not held_out(k, data.val_fraction)]
        if not val and len(train) > 1:
            val.append(train.pop())
        if not train or not val:
            raise UserError(
                f"{where} has too few conversations ({len(convs)}) to train and validate on",
                "use at least two conversations (or a larger data.val_fraction)",
            )
        self.train, self.val = train, val
        self.log(f"sft data: {len(train)} train / {len(val)} held-out conversations from {where}")
        token_bytes = self.tokenizer.token_bytes()
        self.token_bytes = np.pad(
            token_bytes, (0, max(0, self.config.model.vocab_size - len(token_bytes)))
        )
        return {
            "train_tokens": int(sum(sum(c.mask) for c in train)),
            "val_tokens": int(sum(sum(c.mask) for c in val)),
            "train_conversations": len(train),
            "val_conversations": len(val),
            "dataset": dataset_identity(
                where,
                len(convs),
                [path.read_bytes()]
                if data.source != "embedded"
                else (k.encode() + b"\n" for k in keys),
            ),
        }

    def pack_epoch(self, epoch: int) -> list[list[int]]:
        """Rows of training-conversation indices for ``epoch`` (seeded shuffle, best fit)."""
        order = np.random.default_rng([self.config.train.seed, epoch]).permutation(len(self.train))
        return best_fit([len(c.ids) for c in self.train], order, self.row_len)

    def collate(self, rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        return collate(
            [c.ids for c in self.train],
            [c.mask for c in self.train],
            rows,
            self.row_len,
            self.tokenizer.bos_id,
        )

    def batches(self, position: dict[str, Any] | None) -> SFTBatches:
        return SFTBatches(self, position)

    def evaluate(self, model: Any) -> dict[str, float]:
        from nanochat_tui.jax_engine.step import eval_token_losses

        lengths = [len(c.ids) for c in self.val]
        rows = best_fit(lengths, range(len(self.val)), self.row_len)
        x, y = collate(
            [c.ids for c in self.val],
            [c.mask for c in self.val],
            rows,
            self.row_len,
            self.tokenizer.bos_id,
        )
        bsz = self.config.train.device_batch_size
        nats = byte_nats = 0.0
        count = nbytes = 0
        for start in range(0, len(x), bsz):
            xb, yb = x[start : start + bsz], y[start : start + bsz]
            losses = np.asarray(eval_token_losses(model, xb, yb), dtype=np.float64)
            valid = yb >= 0
            nats += float(losses[valid].sum())
            count += int(valid.sum())
            b = self.token_bytes[np.where(valid, yb, 0)] * valid
            byte_nats += float(losses[b > 0].sum())
            nbytes += int(b.sum())
        return {
            "val_loss": nats / max(1, count),
            "val_bpb": byte_nats / (math.log(2) * max(1, nbytes)),
            "val_tokens": count,
        }

    def sample(self, model: Any, step: int) -> list[dict[str, str]]:
        start = self.tokenizer.special("<|assistant_start|>")
        prompts = [conv.ids[: conv.ids.index(start) + 1] for conv in self.val[:3]]
        return sample_replies(model, self.tokenizer, prompts, self.config.model.sequence_len, step)
