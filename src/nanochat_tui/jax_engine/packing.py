"""BOS-aligned best-fit packing of pretraining documents into rows (``data.packing: bestfit``).

Every row starts at a document's ``<|bos|>``, so no token attends across a cut into a document it
cannot see the start of. Documents come in a seeded per-epoch shuffle into a buffer; each row takes
the largest buffered document that still fits, again and again, and when none fits it crops the
shortest one to fill the row exactly (its tail is dropped): no padding, some tokens cropped. This
is karpathy/nanochat's scheme for its current recipe.

The packer's state is fully determined by how many rows it has produced, so a position
``{"rows": n, ...}`` restores the exact order by replaying the (cheap, token-free) plan.
"""

from __future__ import annotations

import bisect
import math
from typing import Any

import numpy as np

from nanochat_tui.errors import UserError


class BestFitRows:
    """Rows of ``row_len`` tokens from the BOS-delimited ``tokens`` (flat, one array)."""

    def __init__(
        self, tokens: np.ndarray, bos_id: int, row_len: int, seed: int, buffer: int = 1000
    ) -> None:
        starts = np.flatnonzero(np.asarray(tokens) == bos_id)
        if len(starts) == 0:
            raise UserError(
                "data.packing 'bestfit' needs documents that start with <|bos|>; none found",
                "rebuild the token cache (delete it under the cache dir) or use data.packing windows",
            )
        self.tokens = tokens
        self.row_len = row_len
        self.seed = seed
        self.buffer = max(1, buffer)
        self.starts = starts
        self.lengths = np.diff(np.r_[starts, len(tokens)])
        self.num_docs = len(starts)
        self.rows = 0
        self.cropped = 0  # tokens dropped by crops so far
        self._epoch = 0
        self._cursor = 0
        self._perm_epoch = -1
        self._perm = np.empty(0, dtype=np.int64)
        self._buf: list[tuple[int, int, int]] = []  # sorted (length, arrival, doc)
        self._arrival = 0

    # ------------------------------------------------------------ plan

    def _permutation(self) -> np.ndarray:
        if self._perm_epoch != self._epoch:
            self._perm = np.random.default_rng([self.seed, self._epoch]).permutation(self.num_docs)
            self._perm_epoch = self._epoch
        return self._perm

    def _fill(self) -> None:
        while len(self._buf) < self.buffer:
            if self._cursor >= self.num_docs:
                self._epoch, self._cursor = self._epoch + 1, 0
            doc = int(self._permutation()[self._cursor])
            self._cursor += 1
            bisect.insort(self._buf, (int(self.lengths[doc]), self._arrival, doc))
            self._arrival += 1

    def plan_row(self) -> list[tuple[int, int]]:
        """The next row as ``[(document, tokens taken from its start), ...]``."""
        pieces: list[tuple[int, int]] = []
        remaining = self.row_len
        while remaining > 0:
            self._fill()
            i = bisect.bisect_right(self._buf, (remaining, math.inf, math.inf)) - 1
            if i >= 0:
                length, _, doc = self._buf.pop(i)
                pieces.append((doc, length))
                remaining -= length
            else:
                length, _, doc = self._buf.pop(0)
                pieces.append((doc, remaining))
                self.cropped += length - remaining
                remaining = 0
        self.rows += 1
        return pieces

    def skip(self, rows: int) -> None:
        """Advance by ``rows`` rows without reading tokens (resume)."""
        for _ in range(rows):
            self.plan_row()

    # ------------------------------------------------------------ tokens

    def next_row(self) -> np.ndarray:
        """The next row's token ids, int32[row_len], starting with BOS."""
        parts = [
            np.asarray(self.tokens[s : s + n], dtype=np.int32)
            for s, n in ((int(self.starts[d]), take) for d, take in self.plan_row())
        ]
        return np.concatenate(parts)

    @property
    def position(self) -> dict[str, Any]:
        return {"rows": self.rows, "epoch": self._epoch, "index": self._cursor}

    @property
    def epoch_fraction(self) -> float:
        """Documents drawn into the buffer, in epochs (slightly ahead of the rows handed out)."""
        return self._epoch + self._cursor / self.num_docs
