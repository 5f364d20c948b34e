"""Pretraining: next-token prediction on the tokenized corpus, evaluated in bits per byte."""

from __future__ import annotations

from typing import Any

import numpy as np

from nanochat_tui.jax_engine.corpus import corpus_fingerprint
from nanochat_tui.jax_engine.data import BatchLoader, build_splits
from nanochat_tui.jax_engine.evaluate import evaluate_bpb, sample_continuations, unigram_baseline
from nanochat_tui.jax_engine.packing import BestFitRows
from nanochat_tui.jax_engine.sharding import placement
from nanochat_tui.jax_engine.step import token_loss_sum
from nanochat_tui.jax_engine.tasks import Task, dataset_identity


class PretrainTask(Task):
    """Fixed windows of the corpus (or BOS-aligned best-fit rows) in a seeded shuffle; loss =
    token cross-entropy."""

    stage = "pretrain"
    loss = staticmethod(token_loss_sum)

    def prepare(self) -> dict[str, Any]:
        config, tokenizer = self.config, self.tokenizer
        self.splits = build_splits(config, tokenizer, log=self.log)
        token_bytes = tokenizer.token_bytes()
        if len(token_bytes) < config.model.vocab_size:
            token_bytes = np.pad(token_bytes, (0, config.model.vocab_size - len(token_bytes)))
        self.token_bytes = token_bytes
        self.unigram_bpb = unigram_baseline(
            self.splits.train,
            self.splits.val,
            token_bytes,
            seq_len=config.model.sequence_len,
            max_tokens=config.train.eval_tokens,
        )
        return {
            "train_tokens": len(self.splits.train),
            "val_tokens": len(self.splits.val),
            "unigram_bpb": self.unigram_bpb,
            "dataset": dataset_identity(
                "embedded stdlib corpus"
                if config.data.source == "embedded"
                else config.data.source,
                sum((self.splits.meta.get("documents") or {}).values()),
                [corpus_fingerprint(config.data).encode()],
            ),
        }

    def batches(self, position: dict[str, Any] | None) -> BatchLoader:
        place = placement(self.config)
        data = self.config.data
        packer = None
        if data.packing == "bestfit":
            packer = BestFitRows(
                self.splits.train,
                self.tokenizer.bos_id,
                self.config.model.sequence_len + 1,
                self.config.train.seed,
                buffer=data.pack_buffer,
            )
        return BatchLoader(
            self.splits.train,
            self.config.model.sequence_len,
            self.config.train.total_batch_size // self.config.model.sequence_len,
            self.config.train.seed,
            position=position,
            transform=place.put_local_batch,
            packer=packer,
            rows=place.local_rows(),  # several hosts: each process reads only its share
        )

    def evaluate(self, model: Any) -> dict[str, float]:
        res = evaluate_bpb(
            model,
            self.splits.val,
            self.token_bytes,
            seq_len=self.config.model.sequence_len,
            batch_size=self.config.train.device_batch_size,
            max_tokens=self.config.train.eval_tokens,
        )
        return {
            "val_bpb": res["val_bpb"],
            "val_loss": res["val_loss"],
            "unigram_bpb": self.unigram_bpb,
        }

    def sample(self, model: Any, step: int) -> list[dict[str, str]]:
        seq = self.config.model.sequence_len
        return sample_continuations(
            model, self.tokenizer, max_new_tokens=min(48, seq // 2), seed=step
        )
