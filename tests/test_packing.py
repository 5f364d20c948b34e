"""BOS-aligned best-fit packing (jax_engine/packing.py) against a plain-Python reference, its
exact resume through the batch loader, and a training run that resumes bit for bit with it."""

from __future__ import annotations

import numpy as np
import pytest

from nanochat_tui.jax_engine.data import BatchLoader
from nanochat_tui.jax_engine.packing import BestFitRows

BOS = 0


def corpus(lengths: list[int]) -> np.ndarray:
    """Documents ``[BOS, d, d, ...]`` with document ``d``'s tokens all equal to ``d + 1``."""
    return np.concatenate(
        [np.array([BOS] + [d + 1] * (n - 1), dtype=np.uint16) for d, n in enumerate(lengths)]
    )


def reference_rows(lengths, row_len, seed, buffer, count):
    """The rule written out plainly: keep ``buffer`` documents (drawn from a per-epoch seeded
    permutation); fill each row with the longest buffered document that fits (ties: the most
    recently buffered); when none fits, crop the shortest (ties: the earliest buffered)."""
    n = len(lengths)
    queue = []
    epoch = 0
    buf = []  # (length, arrival, doc)
    arrival = 0
    rows = []
    for _ in range(count):
        row, remaining = [], row_len
        while remaining > 0:
            while len(buf) < buffer:
                if not queue:
                    queue = list(np.random.default_rng([seed, epoch]).permutation(n))
                    epoch += 1
                doc = int(queue.pop(0))
                buf.append((lengths[doc], arrival, doc))
                arrival += 1
            fits = [b for b in buf if b[0] <= remaining]
            if fits:
                pick = max(fits, key=lambda b: (b[0], b[1]))
                row.append((pick[2], pick[0]))
                remaining -= pick[0]
            else:
                pick = min(buf, key=lambda b: (b[0], b[1]))
                row.append((pick[2], remaining))
                remaining = 0
            buf.remove(pick)
        rows.append(row)
    return rows


@pytest.mark.parametrize("buffer", [1, 4, 16])
def test_rows_follow_the_best_fit_rule_and_start_at_bos(buffer):
    rng = np.random.default_rng(3)
    lengths = [int(n) for n in rng.integers(2, 40, size=50)]
    tokens = corpus(lengths)
    packer = BestFitRows(tokens, BOS, row_len=33, seed=5, buffer=buffer)
    expected = reference_rows(lengths, 33, 5, buffer, count=60)  # > 1 epoch of documents
    for plan in expected:
        row = packer.next_row()
        assert len(row) == 33 and row[0] == BOS
        want = np.concatenate([[BOS] + [d + 1] * (take - 1) for d, take in plan])
        assert np.array_equal(row, want)
    assert packer.position["epoch"] >= 1


def test_whole_documents_are_never_split_when_one_fits():
    lengths = [8, 8, 8, 8, 5, 3, 20]
    packer = BestFitRows(corpus(lengths), BOS, row_len=16, seed=0, buffer=7)
    plans = [packer.plan_row() for _ in range(5)]
    for plan in plans:
        assert sum(take for _, take in plan) == 16
        assert all(take == lengths[doc] for doc, take in plan[:-1])  # only the last is cropped
    assert [take for _, take in plans[0]] == [8, 8] and [take for _, take in plans[1]] == [8, 8]
    long_only = BestFitRows(corpus([20, 20]), BOS, row_len=16, seed=0, buffer=2)
    assert [take for _, take in long_only.plan_row()] == [16] and long_only.cropped == 4


def test_loader_resumes_bestfit_rows_exactly():
    rng = np.random.default_rng(1)
    tokens = corpus([int(n) for n in rng.integers(2, 90, size=80)])

    def loader(position=None):
        packer = BestFitRows(tokens, BOS, row_len=33, seed=9, buffer=8)
        return BatchLoader(tokens, 32, 3, seed=9, position=position, packer=packer)

    straight = loader()
    seen = [straight.next() for _ in range(7)]
    first = loader()
    for _ in range(3):
        first.next()
    position = dict(first.position)
    assert position["rows"] == 9
    resumed = loader(position)
    for i in range(3, 7):
        x, y = resumed.next()
        assert np.array_equal(x, seen[i][0]) and np.array_equal(y, seen[i][1])
        assert np.array_equal(x[:, 1:], y[:, :-1])
        assert (x[:, 0] == BOS).all()
    for each in (straight, first, resumed):
        each.close()


def test_tokens_without_bos_are_refused():
    from nanochat_tui.errors import UserError

    with pytest.raises(UserError, match="bestfit"):
        BestFitRows(np.ones(100, dtype=np.uint16), BOS, row_len=9, seed=0)


def test_training_with_bestfit_resumes_bit_for_bit(tmp_path, monkeypatch):
    from helpers import tiny_overrides
    from nanochat_tui.config import load_config
    from nanochat_tui.jax_engine.control import ControlInbox
    from nanochat_tui.jax_engine.train import train

    overrides = tiny_overrides(
        {"data.packing": "bestfit", "train.num_iterations": 6, "train.save_every": 3}
    )
    config = load_config("tiny", overrides)

    def losses(run_dir, resume=False, stop_at=None):
        control = ControlInbox()
        steps = {}

        def sink(event):
            if event["type"] == "step":
                steps[event["step"]] = event["loss"]
                if event["step"] == stop_at:
                    control.stop()

        train(config, run_dir, sink, control, resume=resume)
        return steps

    straight = losses(tmp_path / "a")
    first = losses(tmp_path / "b", stop_at=2)
    second = losses(tmp_path / "b", resume=True)
    assert {**first, **second} == straight
