"""Preference rows: rendering with a completion mask on the final reply only, per-line validation
with file and line, and the embedded stdlib preference set (deterministic, with a held-out split)."""

from __future__ import annotations

import json

import pytest

from nanochat_tui.align.chat import ConversationError, render_conversation
from nanochat_tui.align.preferences import (
    embedded_preferences,
    held_out,
    load_pairs,
    render_embedded,
    render_pair,
)
from nanochat_tui.errors import UserError

SPECIALS = (
    "<|bos|>", "<|user_start|>", "<|user_end|>", "<|assistant_start|>", "<|assistant_end|>",
    "<|python_start|>", "<|python_end|>", "<|output_start|>", "<|output_end|>",
)  # fmt: skip


class CharTokenizer:
    """One id per character (specials above 256): enough to check rendering and masks."""

    bos_id = 256

    def encode(self, text: str) -> list[int]:
        return [min(ord(c), 255) for c in text]

    def special(self, name: str) -> int:
        return 256 + SPECIALS.index(name)


TOK = CharTokenizer()


def test_pair_renders_prompt_plus_each_reply_with_the_final_reply_masked() -> None:
    row = {"id": "a", "prompt": "Hi?", "chosen": "Yes.", "rejected": "No!"}
    pair = render_pair(TOK, row)
    for side, text in (("chosen", "Yes."), ("rejected", "No!")):
        ids, mask = getattr(pair, f"{side}_ids"), getattr(pair, f"{side}_mask")
        full, full_mask = render_conversation(
            TOK, {"messages": [{"role": "user", "content": "Hi?"},
                               {"role": "assistant", "content": text}]}
        )  # fmt: skip
        assert ids == full and mask == full_mask  # one turn: the reply is all that is supervised
        assert ids[: pair.prompt_len] == pair.chosen_ids[: pair.prompt_len]
        assert sum(mask) == len(text) + 1  # its text and <|assistant_end|>
    # an earlier assistant turn of a multi-turn prompt carries no weight
    messages = [
        {"role": "user", "content": "a"},
        {"role": "assistant", "content": "earlier"},
        {"role": "user", "content": "b"},
    ]
    pair = render_pair(TOK, {"messages": messages, "chosen": "good", "rejected": "bad"})
    assert sum(pair.chosen_mask) == len("good") + 1 and sum(pair.rejected_mask) == len("bad") + 1
    assert not any(pair.chosen_mask[: pair.prompt_len])
    assert pair.id == "line 0"


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"prompt": "q", "chosen": "a"}, "no rejected answer"),
        ({"prompt": "q", "chosen": "", "rejected": "b"}, "no chosen answer"),
        ({"prompt": "q", "chosen": "a", "rejected": "a"}, "the same answer"),
        ({"chosen": "a", "rejected": "b"}, 'needs a "prompt"'),
        (
            {
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": "x"},
                ],
                "chosen": "a",
                "rejected": "b",
            },
            "must end with a user message",
        ),
        ({"prompt": "q", "chosen": 3, "rejected": "b"}, "chosen: message 1"),
    ],
)
def test_bad_rows_say_what_is_wrong(row, message) -> None:
    with pytest.raises(ConversationError, match=message):
        render_pair(TOK, row)


def test_load_pairs_names_file_and_line(tmp_path) -> None:
    path = tmp_path / "prefs.jsonl"
    good = [json.dumps({"id": str(i), "prompt": f"q{i}", "chosen": "yes", "rejected": "no"})
            for i in range(3)]  # fmt: skip
    path.write_text("\n".join(good) + "\n\n")
    pairs = load_pairs(path, TOK, 64)
    assert [p.id for p in pairs] == ["0", "1", "2"] and [p.line for p in pairs] == [1, 2, 3]
    cases = [
        ('{"prompt": "q", "chosen": "a"', "line 4: malformed JSON"),
        ('{"id": "x", "prompt": "q", "chosen": "a"}', "line 4: the row has no rejected answer"),
        (json.dumps({"prompt": "q" * 80, "chosen": "a", "rejected": "b"}), "line 4: the pair is"),
        (
            json.dumps({"id": "1", "prompt": "q", "chosen": "a", "rejected": "b"}),
            "line 4: id '1' is already used on line 2",
        ),
    ]
    for bad, message in cases:
        path.write_text("\n".join([*good, bad]) + "\n")
        with pytest.raises(UserError, match=message) as err:
            load_pairs(path, TOK, 64)
        assert "prefs.jsonl" in err.value.message and err.value.remediation
    path.write_text("\n")
    with pytest.raises(UserError, match="has no preference pairs"):
        load_pairs(path, TOK, 64)


def test_embedded_preference_set_is_deterministic_with_a_held_out_split() -> None:
    rows = embedded_preferences()
    assert rows == embedded_preferences() and len(rows) > 500
    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        name = r["id"].removeprefix("stdlib:")
        assert name in r["prompt"]
        assert r["chosen"].startswith(f"`{name}`: ") and r["rejected"].startswith(f"`{name}`: ")
        assert r["chosen"] != r["rejected"]
    by_id = {r["id"]: r for r in rows}
    assert by_id["stdlib:json.dumps"]["chosen"].startswith("`json.dumps`: Serialize")
    val = [r for r in rows if held_out(r["id"], 0.1)]
    assert 0.05 < len(val) / len(rows) < 0.15
    pairs, skipped = render_embedded(TOK, 200)
    assert skipped > 0 and len(pairs) + skipped == len(rows)
    assert all(p.length <= 200 for p in pairs)


def test_memory_estimate_shows_what_a_live_reference_costs() -> None:
    from nanochat_tui.config import load_config
    from nanochat_tui.config.estimates import memory_estimate, num_params

    def memory(*changes: str):
        return memory_estimate(load_config("dpo-only", list(changes)), "gpu")

    pre, live = memory("pref.reference=precomputed"), memory("pref.reference=live")
    n = num_params(load_config("dpo-only").model)
    assert pre.reference == 0 and live.reference == 4 * n
    assert live.total - pre.total == 4 * n
    assert memory("pref.reference=live", "pref.reference_dtype=bfloat16").reference == 2 * n
    assert memory("pref.reference=live", "train.stage=orpo").reference == 0  # reference-free
    # a pair is two sequences through the model
    sft = memory("train.stage=sft")
    assert pre.activations == 2 * sft.activations
