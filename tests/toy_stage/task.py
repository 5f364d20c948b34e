"""``CountTask``: next-token prediction on 0, 1, 2, ... (mod a period), learnable in a few steps.

Built only from the engine's public pieces (``Task``, ``BatchLoader``, ``placement``, ``loss_sum``)
the way a plugin's stage would be; the loop runs it like any built-in stage.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nanochat_tui.jax_engine.data import BatchLoader
from nanochat_tui.jax_engine.losses import loss_sum
from nanochat_tui.jax_engine.sharding import placement
from nanochat_tui.jax_engine.step import token_loss_sum
from nanochat_tui.jax_engine.tasks import Task, dataset_identity

PERIOD = 37


class CountTask(Task):
    stage = "count"
    headline = ("count_loss",)
    loss = staticmethod(token_loss_sum)

    def prepare(self) -> dict[str, Any]:
        self.tokens = (np.arange(20_000) % PERIOD).astype(np.int32)
        return {
            "train_tokens": len(self.tokens),
            "dataset": dataset_identity("counting", len(self.tokens), [self.tokens.tobytes()]),
        }

    def batches(self, position: dict[str, Any] | None) -> BatchLoader:
        config, place = self.config, placement(self.config)
        return BatchLoader(
            self.tokens,
            config.model.sequence_len,
            config.train.total_batch_size // config.model.sequence_len,
            config.train.seed,
            position=position,
            transform=place.put_local_batch,
            rows=place.local_rows(),
        )

    def evaluate(self, model: Any) -> dict[str, float]:
        seq, rows = self.config.model.sequence_len, self.config.train.device_batch_size
        window = self.tokens[: rows * seq + 1]
        x = window[:-1].reshape(rows, seq)
        y = window[1:].reshape(rows, seq)
        total, count = loss_sum(model, x, y)
        return {"count_loss": float(total) / float(count)}
