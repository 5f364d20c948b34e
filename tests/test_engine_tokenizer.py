"""Tokenizer: exact round trip on arbitrary unicode, special tokens, hash, cache, chat format."""

from __future__ import annotations

import pytest

from nanochat_tui.config import load_config
from nanochat_tui.jax_engine.corpus import iter_documents
from nanochat_tui.jax_engine.tokenizer import SPECIAL_TOKENS, Tokenizer, get_tokenizer

TINY = ["model.vocab_size=512", "data.max_chars=300000", "data.tokenizer_chars=100000"]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    config = load_config("tiny", TINY)
    return Tokenizer.train((d for d in iter_documents(config.data, 100_000)), 512)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello world",
        "emoji 🎉🇯🇵👩‍👩‍👧 and more",
        "漢字かなカナ 한국어 العربية",
        "combining e\u0301 a\u0308\u0323 \u200d zero-width",
        "control \x00\x01\x1b[31m\t\r\n\x7f",
        "   leading and trailing spaces   \n\n\n",
        "def f(x):\n    return x ** 2  # comment\n",
        "\ud7ff\ue000\U0010ffff",
    ],
)
def test_round_trip(tok: Tokenizer, text: str) -> None:
    assert tok.decode(tok.encode(text)) == text


def test_special_tokens_are_single_ids(tok: Tokenizer) -> None:
    ids = [tok.special(s) for s in SPECIAL_TOKENS]
    assert len(set(ids)) == len(SPECIAL_TOKENS)
    for name, idx in zip(SPECIAL_TOKENS, ids, strict=True):
        assert tok.encode(name) == [idx]
        assert tok.decode([idx]) == name
    assert tok.bos_id == tok.special("bos") == tok.special("<|bos|>")
    assert tok.vocab_size == 512


def test_token_bytes_counts_utf8_and_zero_for_specials(tok: Tokenizer) -> None:
    tb = tok.token_bytes()
    assert all(tb[i] == 0 for i in tok.special_ids)
    text = "naïve 漢字 code()"
    ids = tok.encode(text)
    assert sum(int(tb[i]) for i in ids) == len(text.encode("utf-8"))


def test_hash_is_stable_across_save_load(tok: Tokenizer, tmp_path) -> None:
    path = tok.save(tmp_path / "tokenizer.json")
    again = Tokenizer.load(path)
    assert again.hash == tok.hash and len(tok.hash) == 16
    assert again.encode("print('hi')") == tok.encode("print('hi')")


def test_render_conversation(tok: Tokenizer) -> None:
    ids = tok.render_conversation(
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}],
        for_completion=False,
    )
    s = tok.special
    assert ids[0] == tok.bos_id
    assert ids[1] == s("user_start") and s("user_end") in ids
    assert ids[-1] == s("assistant_end")
    comp = tok.render_conversation([{"role": "user", "content": "hi"}], for_completion=True)
    assert comp[-1] == s("assistant_start")


def test_get_tokenizer_caches_by_corpus_and_vocab(monkeypatch) -> None:
    config = load_config("tiny", TINY)
    first = get_tokenizer(config)
    calls = []
    monkeypatch.setattr(Tokenizer, "train", classmethod(lambda cls, *a: calls.append(a)))
    second = get_tokenizer(config)
    assert not calls, "second call must come from the cache"
    assert second.hash == first.hash
