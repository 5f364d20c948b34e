"""Dataset checking per line (the Datasets view and `project datasets` share it)."""

from __future__ import annotations

import json

import pytest

from nanochat_tui.align.chat import normalize, render
from nanochat_tui.align.datasets import check_dataset, preview, read_row, text_segments
from nanochat_tui.errors import UserError
from nanochat_tui.jax_engine.tokenizer import Tokenizer

TOOL_CONV = {
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2 + 3?"},
        {"role": "assistant", "content": [{"type": "python", "text": "2 + 3"}]},
        {"role": "tool", "content": "5"},
        {"role": "assistant", "content": "It is 5."},
    ]
}
LINES = [
    json.dumps(TOOL_CONV),  # 1 ok
    "{not json",  # 2
    json.dumps({"messages": [{"role": "robot", "content": "hi"}]}),  # 3
    json.dumps({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}),
    "",  # blank: skipped
    json.dumps({"prompt": "Hi", "completion": "Hello there."}),  # 6 ok
    json.dumps({"messages": [{"role": "user", "content": "only a question"}]}),  # 7 no assistant
    json.dumps({"prompt": "x" * 400, "completion": "y"}),  # 8 over-long (chars)
    json.dumps({"prompt": "Q?", "chosen": "Good.", "rejected": "Bad."}),  # 9 preference ok
    json.dumps({"prompt": "Q?", "chosen": 3, "rejected": "Bad."}),  # 10
]


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    text = "What is 2 + 3? It is 5. Be brief. Hi Hello there. Good. Bad. Q? xy only a question\n"
    return Tokenizer.train([text] * 20, 300)


def test_every_bad_line_is_reported(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(LINES) + "\n")
    report = check_dataset(path, max_len=300)
    assert report.unit == "chars"
    assert report.lines == 9 and report.chat_rows == 2 and report.preference_rows == 1
    got = {i.line: i.message for i in report.issues}
    assert sorted(got) == [2, 3, 4, 7, 8, 10]
    assert got[2].startswith("malformed JSON")
    assert "unknown role 'robot'" in got[3]
    assert "two user messages in a row" in got[4]
    assert "no assistant tokens" in got[7]
    assert got[8].startswith("over-long: 406 characters, over the limit of 300")
    assert got[10].startswith("chosen: ")
    assert report.first_valid_line == 1
    assert report.stats().max == max(report.lengths)


def test_char_lengths_follow_the_rendered_layout():
    turns = normalize({"prompt": "Hi", "completion": "Hello."})
    segs = text_segments(turns)
    assert "".join(s.text for s in segs) == (
        "<|bos|><|user_start|>Hi<|user_end|><|assistant_start|>Hello.<|assistant_end|>"
    )
    assert [s.text for s in segs if s.supervised] == ["Hello.", "<|assistant_end|>"]


def test_token_lengths_and_preview_match_render(tok, tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text(json.dumps(TOOL_CONV) + "\n")
    report = check_dataset(path, tokenizer=tok)
    ids, mask = render(tok, normalize(TOOL_CONV))
    assert report.unit == "tokens"
    assert report.lengths == [len(ids)] and report.supervised == [sum(mask)]
    segments = preview(normalize(TOOL_CONV), tok)
    assert "".join(s.text for s in segments) == tok.decode(ids)
    supervised = "".join(s.text for s in segments if s.supervised)
    assert supervised == tok.decode([i for i, m in zip(ids, mask, strict=True) if m])
    # the no-tokenizer preview marks the same text as supervised
    assert "".join(s.text for s in preview(normalize(TOOL_CONV)) if s.supervised) == supervised
    over = check_dataset(path, tokenizer=tok, max_len=len(ids) - 1)
    assert over.issues[0].message.startswith(f"over-long: {len(ids)} tokens")


def test_read_row_and_unreadable(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(LINES) + "\n")
    assert read_row(path, 6) == {"prompt": "Hi", "completion": "Hello there."}
    with pytest.raises(UserError, match="line 2: malformed JSON"):
        read_row(path, 2)
    with pytest.raises(UserError, match="no line 99"):
        read_row(path, 99)
    with pytest.raises(UserError, match="cannot read"):
        check_dataset(tmp_path / "missing.jsonl")
