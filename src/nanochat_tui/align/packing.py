"""Best-fit packing of rendered conversations into fixed rows, and rows → (inputs, targets).

A row holds whole conversations (each starts with ``<|bos|>``) back to back, padded at the end;
targets are the next token where the mask supervises it and −1 elsewhere (padding, user turns,
tool outputs), which is exactly the token-weighted loss the engine's step sums. No JAX here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

OPEN_ROWS = 64  # rows still accepting conversations: bounds the cost, keeps the order local


def best_fit(lengths: Sequence[int], order: Sequence[int], row_len: int) -> list[list[int]]:
    """Conversation indices per row: each conversation, in ``order``, goes to the open row it
    fills most tightly, or opens a new row. Rows come out in the order they were opened."""
    rows: list[list[int]] = []
    free: list[int] = []
    open_ids: list[int] = []
    for idx in order:
        n = lengths[idx]
        if n > row_len:
            raise ValueError(f"conversation {idx} has {n} tokens, over the row length {row_len}")
        best = -1
        for r in open_ids:
            if n <= free[r] and (best < 0 or free[r] < free[best]):
                best = r
        if best < 0:
            rows.append([])
            free.append(row_len)
            open_ids.append(len(rows) - 1)
            if len(open_ids) > OPEN_ROWS:
                open_ids.pop(0)
            best = len(rows) - 1
        rows[best].append(int(idx))
        free[best] -= n
        if free[best] == 0:
            open_ids.remove(best)
    return rows


def collate(
    ids: Sequence[Sequence[int]],
    masks: Sequence[Sequence[int]],
    rows: Sequence[Sequence[int]],
    row_len: int,
    pad_id: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` int32[len(rows), row_len − 1]: inputs, and targets (−1 where unsupervised)."""
    tokens = np.full((len(rows), row_len), pad_id, dtype=np.int32)
    weights = np.zeros((len(rows), row_len), dtype=bool)
    for r, members in enumerate(rows):
        at = 0
        for idx in members:
            n = len(ids[idx])
            tokens[r, at : at + n] = ids[idx]
            weights[r, at : at + n] = np.asarray(masks[idx], dtype=bool)
            at += n
    x = tokens[:, :-1]
    y = np.where(weights[:, 1:], tokens[:, 1:], -1).astype(np.int32)
    return x, y
