"""Corpus readers, cached token splits, deterministic + resumable batch order, unigram bpb."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nanochat_tui.config import load_config
from nanochat_tui.config.schema import DataConfig
from nanochat_tui.errors import UserError
from nanochat_tui.jax_engine.corpus import corpus_fingerprint, iter_documents
from nanochat_tui.jax_engine.data import BatchLoader, build_splits, unigram_bpb
from nanochat_tui.jax_engine.tokenizer import get_tokenizer

TINY = [
    "model.vocab_size=512",
    "model.sequence_len=64",
    "data.max_chars=300000",
    "data.tokenizer_chars=100000",
    "train.device_batch_size=8",
    "train.total_batch_size=512",
]


def test_embedded_corpus_is_deterministic_and_capped() -> None:
    data = DataConfig(max_chars=50_000)
    a = list(iter_documents(data))
    b = list(iter_documents(data))
    assert a == b
    assert sum(len(d) for d in a) == 50_000
    assert corpus_fingerprint(data) == corpus_fingerprint(DataConfig(max_chars=50_000))
    assert corpus_fingerprint(data) != corpus_fingerprint(DataConfig(max_chars=60_000))


def test_readers_text_jsonl_parquet(tmp_path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "b.md").write_text("second")
    (tmp_path / "t" / "a.txt").write_text("first")
    assert list(iter_documents(DataConfig(source=str(tmp_path / "t")))) == ["first", "second"]

    jl = tmp_path / "d.jsonl"
    jl.write_text(json.dumps({"body": "x1"}) + "\n\n" + json.dumps({"body": "x2"}) + "\n")
    assert list(iter_documents(DataConfig(source=str(jl), text_field="body"))) == ["x1", "x2"]

    (tmp_path / "p").mkdir()
    pq.write_table(
        pa.table({"text": ["p1", "p2", None, "p3"]}), tmp_path / "p" / "shard_00000.parquet"
    )
    docs = list(iter_documents(DataConfig(source=str(tmp_path / "p"), max_chars=5)))
    assert docs == ["p1", "p2", "p"]
    with pytest.raises(UserError, match="no column"):
        list(iter_documents(DataConfig(source=str(tmp_path / "p"), text_field="body")))
    with pytest.raises(UserError, match="does not exist"):
        list(iter_documents(DataConfig(source=str(tmp_path / "missing"))))


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("NANOCHAT_TUI_HOME", str(tmp_path_factory.mktemp("home")))
    config = load_config("tiny", TINY)
    tok = get_tokenizer(config)
    out = build_splits(config, tok), tok, config
    mp.undo()
    return out


def test_splits_are_cached_and_hold_out_whole_documents(splits) -> None:
    sp, tok, config = splits
    assert sp.meta["documents"]["val"] > 0 and sp.meta["documents"]["train"] > 0
    assert sp.train.dtype == np.uint16
    assert sp.train[0] == tok.bos_id and sp.val[0] == tok.bos_id
    again = build_splits(config, tok)  # different HOME → rebuilt, must be identical
    assert np.array_equal(np.asarray(again.train), np.asarray(sp.train))
    assert np.array_equal(np.asarray(again.val), np.asarray(sp.val))


def test_same_seed_same_batches_different_seed_different(splits) -> None:
    sp = splits[0]
    a = BatchLoader(sp.train, 64, 4, seed=1)
    b = BatchLoader(sp.train, 64, 4, seed=1, prefetch=0)
    c = BatchLoader(sp.train, 64, 4, seed=2)
    for _ in range(5):
        xa, ya = a.next()
        xb, yb = b.next()
        xc, _ = c.next()
        assert np.array_equal(xa, xb) and np.array_equal(ya, yb)
        assert np.array_equal(xa[:, 1:], ya[:, :-1])  # targets are inputs shifted by one
    assert not np.array_equal(xa, xc)
    for loader in (a, b, c):
        loader.close()


def test_position_save_restore_crosses_epochs(splits) -> None:
    sp = splits[0]
    tokens = np.asarray(sp.train[: 64 * 10 + 1])  # 10 windows: epochs turn over quickly
    straight = BatchLoader(tokens, 64, 3, seed=7)
    seen = [straight.next()[0] for _ in range(8)]
    first = BatchLoader(tokens, 64, 3, seed=7)
    for _ in range(3):
        first.next()
    pos = dict(first.position)
    assert pos == {"epoch": 0, "index": 9}
    resumed = BatchLoader(tokens, 64, 3, seed=7, position=pos)
    for i in range(3, 8):
        assert np.array_equal(resumed.next()[0], seen[i])
    assert resumed.position["epoch"] >= 1
    epoch0 = {tuple(r) for b in seen[:3] for r in b[:, :4]}
    assert len(epoch0) == 9  # no window repeats within an epoch
    for loader in (straight, first, resumed):
        loader.close()


def test_unigram_bpb_is_entropy_of_a_known_distribution() -> None:
    token_bytes = np.array([0, 1, 1, 1, 1], dtype=np.int32)  # id 0 is "special"
    train = np.array([1, 2, 3, 4] * 1000)
    val = np.array([0, 1, 2, 3, 4, 1, 2, 3, 4])
    bpb = unigram_bpb(train, val, token_bytes, max_tokens=8)
    assert bpb == pytest.approx(2.0, abs=0.01)  # uniform over 4 one-byte tokens = 2 bits/byte
