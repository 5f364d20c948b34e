"""Chat format: rendered ids and mask equal an independent re-implementation of nanochat's
render_conversation; tool messages, prompt/completion and validation messages."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from nanochat_tui.align.chat import (
    ConversationError,
    load_conversations,
    render_conversation,
    render_for_completion,
)
from nanochat_tui.errors import UserError
from nanochat_tui.jax_engine.tokenizer import Tokenizer

TEXT = (
    "What does json.dumps do? Serialize obj to a JSON formatted str. 2 + 3 * 4 = 14. "
    "You are a helpful assistant named nano. Hello! How are you? print(1) def f(x): return x\n"
)


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return Tokenizer.train([TEXT] * 20, 320)


def nanochat_reference(tok: Tokenizer, conversation: dict) -> tuple[list[int], list[int]]:
    """nanochat's rules, written out independently of align.chat (nanochat-native input only)."""
    messages = copy.deepcopy(conversation["messages"])
    if messages[0]["role"] == "system":
        assert messages[1]["role"] == "user"
        messages[1]["content"] = messages[0]["content"] + "\n\n" + messages[1]["content"]
        messages = messages[1:]
    ids, mask = [tok.special("<|bos|>")], [0]
    for i, m in enumerate(messages):
        assert m["role"] == ("user" if i % 2 == 0 else "assistant")
        if m["role"] == "user":
            seq = [tok.special("<|user_start|>"), *tok.encode(m["content"]),
                   tok.special("<|user_end|>")]  # fmt: skip
            ids += seq
            mask += [0] * len(seq)
            continue
        ids.append(tok.special("<|assistant_start|>"))
        mask.append(0)
        parts = m["content"]
        if isinstance(parts, str):
            parts = [{"type": "text", "text": parts}]
        for p in parts:
            body = tok.encode(p["text"])
            if p["type"] == "text":
                ids += body
                mask += [1] * len(body)
            elif p["type"] == "python":
                seq = [tok.special("<|python_start|>"), *body, tok.special("<|python_end|>")]
                ids += seq
                mask += [1] * len(seq)
            else:
                seq = [tok.special("<|output_start|>"), *body, tok.special("<|output_end|>")]
                ids += seq
                mask += [0] * len(seq)
        ids.append(tok.special("<|assistant_end|>"))
        mask.append(1)
    return ids, mask


NATIVE = [
    {"messages": [{"role": "user", "content": "Hello!"}, {"role": "assistant", "content": "Hi."}]},
    {
        "messages": [
            {"role": "system", "content": "You are a helpful assistant named nano."},
            {"role": "user", "content": "How are you?"},
            {"role": "assistant", "content": "Fine, thanks."},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "What does json.dumps do?"},
            {"role": "assistant", "content": "Serialize obj to a JSON formatted str."},
            {"role": "user", "content": "And 2 + 3 * 4?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me compute. "},
                    {"type": "python", "text": "2 + 3 * 4"},
                    {"type": "python_output", "text": "14"},
                    {"type": "text", "text": "It is 14."},
                ],
            },
        ]
    },
    {"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": ""}]},
]


@pytest.mark.parametrize(
    "conversation", NATIVE, ids=["plain", "system", "multi-turn+tool", "empty"]
)
def test_render_equals_nanochat(tok: Tokenizer, conversation: dict) -> None:
    ids, mask = render_conversation(tok, conversation)
    assert (ids, mask) == nanochat_reference(tok, conversation)
    assert len(ids) == len(mask)


def test_tool_role_joins_the_assistant_turn(tok: Tokenizer) -> None:
    with_tool = {
        "messages": [
            {"role": "user", "content": "And 2 + 3 * 4?"},
            {"role": "assistant", "content": [{"type": "python", "text": "2 + 3 * 4"}]},
            {"role": "tool", "content": "14"},
            {"role": "assistant", "content": "It is 14."},
        ]
    }
    native = {
        "messages": [
            {"role": "user", "content": "And 2 + 3 * 4?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "python", "text": "2 + 3 * 4"},
                    {"type": "python_output", "text": "14"},
                    {"type": "text", "text": "It is 14."},
                ],
            },
        ]
    }
    ids, mask = render_conversation(tok, with_tool)
    assert (ids, mask) == nanochat_reference(tok, native)
    # the supervised tokens decode to exactly the call and the answer, never the output
    supervised = tok.decode(i for i, m in zip(ids, mask, strict=True) if m)
    assert supervised == "<|python_start|>2 + 3 * 4<|python_end|>It is 14.<|assistant_end|>"


def test_prompt_completion(tok: Tokenizer) -> None:
    pc = {"prompt": "Hello!", "completion": "Hi."}
    assert render_conversation(tok, pc) == nanochat_reference(tok, NATIVE[0])


def test_render_for_completion(tok: Tokenizer) -> None:
    ids = render_for_completion(tok, NATIVE[1])
    full, _ = render_conversation(tok, NATIVE[1])
    assistant_start = tok.special("<|assistant_start|>")
    assert ids[-1] == assistant_start
    assert ids == full[: full.index(assistant_start) + 1]


@pytest.mark.parametrize(
    ("conversation", "expect"),
    [
        ({"messages": [{"role": "bot", "content": "x"}]}, "unknown role 'bot'"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, "must start with a user"),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
            "two user messages in a row",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": "a"},
                    {"role": "assistant", "content": "b"},
                    {"role": "assistant", "content": "c"},
                ]
            },
            "two assistant messages in a row",
        ),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "tool", "content": "1"}]},
            "must follow an assistant python call",
        ),
        (
            {"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "s"}]},
            "system message may only come first",
        ),
        ({"messages": []}, "no messages"),
        ({"text": "hi"}, "expected an object"),
        ({"messages": [{"role": "user", "content": 3}]}, "content must be a string"),
    ],
)
def test_bad_conversations(tok: Tokenizer, conversation: dict, expect: str) -> None:
    with pytest.raises(ConversationError, match=expect):
        render_conversation(tok, conversation)


def _write(tmp_path: Path, lines: list[str]) -> Path:
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_load_conversations(tok: Tokenizer, tmp_path: Path) -> None:
    path = _write(tmp_path, [json.dumps(c) for c in NATIVE[:3]] + [""])
    rendered = load_conversations(path, tok, max_tokens=1000)
    assert [r.line for r in rendered] == [1, 2, 3]
    assert (rendered[2].ids, rendered[2].mask) == nanochat_reference(tok, NATIVE[2])


@pytest.mark.parametrize(
    ("lines", "expect"),
    [
        ([json.dumps(NATIVE[0]), "{not json"], "line 2: malformed JSON"),
        (
            [json.dumps({"messages": [{"role": "robot", "content": "x"}]})],
            "line 1: message 0: unknown role",
        ),
        ([json.dumps(NATIVE[2])], "line 1: the conversation is .* tokens, over the limit of 10"),
        ([json.dumps({"messages": [{"role": "user", "content": "x"}]})], "no assistant tokens"),
        ([""], "has no conversations"),
    ],
)
def test_load_errors_name_file_and_line(
    tok: Tokenizer, tmp_path: Path, lines: list[str], expect: str
) -> None:
    path = _write(tmp_path, lines)
    with pytest.raises(UserError, match=expect) as info:
        load_conversations(path, tok, max_tokens=10 if "limit" in expect else 1000)
    assert str(path) in info.value.message and info.value.remediation


def test_embedded_set_is_deterministic_and_valid(tok: Tokenizer) -> None:
    from nanochat_tui.align.calculator import evaluate
    from nanochat_tui.align.chat import normalize
    from nanochat_tui.align.embedded import embedded_conversations, held_out

    convs = embedded_conversations()
    assert convs == embedded_conversations()
    assert len(convs) > 500
    for conv in convs:
        normalize(conv)  # every conversation is in the format
    asked = {c["messages"][0]["content"]: c["messages"][1]["content"] for c in convs}
    assert asked["What is your name?"] == "My name is nanochat."
    dumps = next(q for q in asked if "`json.dumps`" in q)
    assert asked[dumps] == "`json.dumps`: Serialize ``obj`` to a JSON formatted ``str``."
    tools = [c for c in convs if c["messages"][-2]["role"] == "tool"]
    assert len(tools) == 120
    for conv in tools:
        call = conv["messages"][1]["content"][0]["text"]
        assert conv["messages"][2]["content"] == str(evaluate(call))
    val = [c for c in convs if held_out(c["messages"][0]["content"], 0.05)]
    assert 0 < len(val) < 0.1 * len(convs)
