"""Tokenized train/val splits (cached as .npy) and a deterministic, resumable batch order.

Each document is encoded as ``<|bos|> + tokens`` and assigned to the validation split by a hash of
its index (deterministic, whole documents). The train split is cut into fixed windows of
``sequence_len + 1`` tokens; every epoch visits them in a permutation seeded by (seed, epoch). The
loader's position ``{"epoch", "index"}`` goes into checkpoint meta and restores the exact order.
No JAX here: batches are numpy int32 arrays.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nanochat_tui.errors import UserError
from nanochat_tui.jax_engine.packing import BestFitRows
from nanochat_tui.jax_engine.tokenizer import Tokenizer

log = logging.getLogger("nanochat_tui.data")


def is_val_document(index: int, val_fraction: float) -> bool:
    """Deterministic split by document index (stable across machines and Python versions)."""
    digest = hashlib.blake2b(str(index).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") / 2**64 < val_fraction


@dataclass
class TokenSplits:
    train: np.ndarray  # uint16/uint32, memory-mapped
    val: np.ndarray
    path: Path  # cache folder
    meta: dict


def _dtype(vocab_size: int) -> type:
    return np.uint16 if vocab_size <= 2**16 else np.uint32


def build_splits(
    config, tokenizer: Tokenizer, log: Callable[[str], None] | None = None
) -> TokenSplits:
    """Tokenize the corpus once per (corpus fingerprint, tokenizer hash, val_fraction); reuse after."""
    from nanochat_tui import paths
    from nanochat_tui.jax_engine.corpus import corpus_fingerprint, iter_documents

    data = config.data
    key = f"{corpus_fingerprint(data)}-{tokenizer.hash}-val{data.val_fraction:g}"
    folder = paths.cache_dir() / "tokens" / key
    if (folder / "meta.json").is_file():
        try:
            meta = json.loads((folder / "meta.json").read_text())
            return TokenSplits(
                np.load(folder / "train.npy", mmap_mode="r"),
                np.load(folder / "val.npy", mmap_mode="r"),
                folder,
                meta,
            )
        except (OSError, ValueError):
            shutil.rmtree(folder, ignore_errors=True)  # damaged cache: rebuild
    if log:
        log("tokenizing the corpus (cached for later runs)")
    start = time.time()
    dtype = _dtype(tokenizer.vocab_size)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": []}
    counts = {"train": 0, "val": 0}
    batch: list[str] = []
    index = 0

    def flush() -> None:
        nonlocal index
        for ids in tokenizer.encode_batch(batch):
            split = "val" if is_val_document(index, data.val_fraction) else "train"
            parts[split].append(np.asarray([tokenizer.bos_id, *ids], dtype=dtype))
            counts[split] += 1
            index += 1
        batch.clear()

    chars = 0
    for doc in iter_documents(data):
        batch.append(doc)
        chars += len(doc)
        if len(batch) >= 256:
            flush()
    flush()
    if counts["val"] == 0 and counts["train"] > 1:  # tiny corpus: hold out the last document
        parts["val"].append(parts["train"].pop())
        counts["val"], counts["train"] = 1, counts["train"] - 1
    train = np.concatenate(parts["train"]) if parts["train"] else np.zeros(0, dtype)
    val = np.concatenate(parts["val"]) if parts["val"] else np.zeros(0, dtype)
    seq = config.model.sequence_len
    if len(train) < seq + 2 or len(val) < 2:
        raise UserError(
            f"the corpus is too small: {len(train)} train / {len(val)} val tokens for "
            f"sequence_len {seq}",
            "use more data (raise data.max_chars, 0 = all) or a shorter model.sequence_len",
        )
    meta = {
        "documents": counts,
        "tokens": {"train": len(train), "val": len(val)},
        "chars": chars,
        "tokenizer_hash": tokenizer.hash,
        "seconds": round(time.time() - start, 2),
    }
    tmp = folder.with_name(folder.name + f".tmp{threading.get_ident()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    np.save(tmp / "train.npy", train)
    np.save(tmp / "val.npy", val)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    try:
        tmp.rename(folder)
    except OSError:  # another process won the race: use theirs
        shutil.rmtree(tmp, ignore_errors=True)
    return TokenSplits(
        np.load(folder / "train.npy", mmap_mode="r"),
        np.load(folder / "val.npy", mmap_mode="r"),
        folder,
        meta,
    )


# ---------------------------------------------------------------- batch order


class BatchLoader:
    """Yields (inputs, targets) int32[B, T] from a seeded shuffle of fixed windows, resumably.

    With a ``packer`` (packing.BestFitRows, ``data.packing: bestfit``) rows come from it instead
    and the position is the packer's.

    ``position`` is the place *after* the last batch handed out, so saving it with a checkpoint
    and passing it back reproduces the following batches exactly. With ``prefetch`` > 0 a
    background thread builds the next batches; ``data_wait`` accumulates the time ``next()`` spent
    waiting for it. ``transform(x, y)`` runs on each batch in that thread too (the train loop
    reshapes into micro-batches and moves them to the device there, off the step's critical path).

    ``rows`` (several hosts): the indices of the rows of each batch this process reads; the order
    and the position advance over the whole batch as on one process, but only those windows are
    read from the token cache. A best-fit ``packer`` is sequential, so it still packs every row
    and only ``rows`` are kept. ``rows_read`` counts the rows read (the close logs it).
    """

    def __init__(
        self,
        tokens: np.ndarray,
        seq_len: int,
        batch_size: int,
        seed: int,
        position: dict | None = None,
        prefetch: int = 2,
        transform: Callable[[np.ndarray, np.ndarray], tuple] | None = None,
        packer: BestFitRows | None = None,
        rows: np.ndarray | None = None,
    ) -> None:
        self.tokens = tokens
        self.packer = packer
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        if self.rows is not None and (self.rows.min() < 0 or self.rows.max() >= batch_size):
            raise ValueError(f"rows {self.rows.tolist()} outside a batch of {batch_size}")
        self.rows_read = 0
        self.batches_made = 0
        self._counts = threading.Lock()  # the prefetch thread counts, close() reports
        self.transform = transform
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.seed = seed
        self.num_windows = (len(tokens) - 1) // seq_len
        if self.num_windows < 1:
            raise UserError(
                f"only {len(tokens)} training tokens for sequence_len {seq_len}",
                "use more data or a shorter model.sequence_len",
            )
        pos = position or {"epoch": 0, "index": 0}
        self._epoch, self._index = int(pos["epoch"]), int(pos["index"])
        self.position = {"epoch": self._epoch, "index": self._index}
        if packer is not None:
            packer.skip(int(pos.get("rows", 0)))
            self.position = packer.position
        self.data_wait = 0.0
        self._perm_epoch = -1
        self._perm = np.empty(0, dtype=np.int64)
        self._queue: queue.Queue | None = None
        self._stop = threading.Event()
        if prefetch > 0:
            self._queue = queue.Queue(maxsize=prefetch)
            self._thread = threading.Thread(target=self._produce, daemon=True, name="data-prefetch")
            self._thread.start()

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.num_windows)
            self._perm_epoch = epoch
        return self._perm

    def _make(self) -> tuple[np.ndarray, np.ndarray, dict]:
        if self.packer is not None:
            block = np.stack([self.packer.next_row() for _ in range(self.batch_size)])
            if self.rows is not None:
                block = block[self.rows]
            position = self.packer.position
        else:
            windows = []
            for _ in range(self.batch_size):
                if self._index >= self.num_windows:
                    self._epoch, self._index = self._epoch + 1, 0
                windows.append(int(self._permutation(self._epoch)[self._index]))
                self._index += 1
            if self.rows is not None:
                windows = [windows[r] for r in self.rows]
            seq = self.seq_len
            block = np.stack(
                [np.asarray(self.tokens[w * seq : w * seq + seq + 1], np.int32) for w in windows]
            )
            position = {"epoch": self._epoch, "index": self._index}
        with self._counts:
            self.rows_read += len(block)
            self.batches_made += 1
        x, y = block[:, :-1], block[:, 1:]
        if self.transform is not None:
            x, y = self.transform(x, y)
        return x, y, position

    def _produce(self) -> None:
        assert self._queue is not None
        while not self._stop.is_set():
            try:
                item = self._make()
            except Exception as err:  # surface in the consumer
                item = err
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue

    def next(self) -> tuple:
        start = time.perf_counter()
        if self._queue is None:
            x, y, pos = self._make()
        else:
            item = self._queue.get()
            if isinstance(item, Exception):
                raise item
            x, y, pos = item
        self.data_wait += time.perf_counter() - start
        self.position = pos
        return x, y

    def close(self) -> None:
        self._stop.set()
        share = "all" if self.rows is None else f"rows {self.rows.tolist()}"
        with self._counts:
            log.info(
                "data: read %d rows in %d batches (%s of each %d-row batch)",
                self.rows_read, self.batches_made, share, self.batch_size,
            )  # fmt: skip

    @property
    def epoch_fraction(self) -> float:
        if self.packer is not None:
            return self.packer.epoch_fraction
        return self.position["epoch"] + self.position["index"] / self.num_windows


def val_batches(tokens: np.ndarray, seq_len: int, batch_size: int, max_tokens: int):
    """Sequential validation windows (no shuffle), at most ``max_tokens`` target tokens."""
    n = min((len(tokens) - 1) // seq_len, max(1, math.ceil(max_tokens / seq_len)))
    if n < 1:  # val split shorter than one window: one short row
        row = np.asarray(tokens, dtype=np.int32)
        yield row[None, :-1], row[None, 1:]
        return
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        block = np.stack(
            [
                np.asarray(tokens[i * seq_len : i * seq_len + seq_len + 1], dtype=np.int32)
                for i in range(start, start + count)
            ]
        )
        yield block[:, :-1], block[:, 1:]


def unigram_bpb(
    train: np.ndarray, val: np.ndarray, token_bytes: np.ndarray, max_tokens: int
) -> float:
    """Bits per byte of an add-one-smoothed unigram model fit on train, scored on the val targets
    the evaluation sees — the baseline a trained model must clearly beat."""
    vocab = len(token_bytes)
    counts = np.bincount(np.asarray(train, dtype=np.int64), minlength=vocab)[:vocab] + 1.0
    logp = np.log(counts / counts.sum())
    seq_len_targets = np.asarray(val[1 : 1 + max_tokens], dtype=np.int64)
    nbytes = token_bytes[seq_len_targets]
    mask = nbytes > 0
    nats = -logp[seq_len_targets][mask].sum()
    return float(nats / (math.log(2) * max(1, nbytes[mask].sum())))
