"""SOUL.md parsing/validation and the agent interface's validation."""

from __future__ import annotations

import json

import pytest

from nanochat_tui.align.interface import (
    PYTHON,
    Interface,
    Tool,
    check_arguments,
    parse_interface,
    render_interface,
)
from nanochat_tui.align.soul import STARTER_SOUL, Principle, Soul, parse_soul, render_soul
from nanochat_tui.errors import UserError

GOOD = """\
# Ada

## Persona
Curious and kind.
### Style
Short answers.

## Principles
### Honesty
Never invent facts.
Say when unsure.
Critique: Find invented claims.
Revision: Remove them,
and say so.

### Brevity
Be brief.
"""


def test_parse_good_soul():
    soul = parse_soul(GOOD)
    assert soul.name == "Ada"
    assert soul.persona == "Curious and kind.\n### Style\nShort answers."
    assert soul.principles == (
        Principle(
            "Honesty",
            "Never invent facts.\nSay when unsure.",
            "Find invented claims.",
            "Remove them,\nand say so.",
        ),
        Principle("Brevity", "Be brief."),
    )


def test_render_round_trips():
    for text in (GOOD, STARTER_SOUL):
        soul = parse_soul(text)
        assert parse_soul(render_soul(soul)) == soul
    assert parse_soul("# X\n") == Soul("X")


def test_starter_soul_has_requests():
    soul = parse_soul(STARTER_SOUL)
    assert soul.name and len(soul.principles) >= 3
    assert all(p.critique and p.revision for p in soul.principles)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("## Persona\nhi\n", 1, "starts with its name"),
        ("#\n## Persona\n", 1, "no name"),
        ("# A\n## Persona\nx\n## Values\n", 4, "unknown section 'Values'"),
        ("# A\n## Principles\n### Honesty\n\n### Brevity\nBe brief.\n", 3, "'Honesty' has no text"),
        ("# A\n## Principles\n### Honesty\nCritique: x\n", 3, "has no text"),
        ("# A\nfree text\n", 2, "outside a section"),
        ("# A\n## Principles\nloose\n", 3, "before the first principle"),
        ("# A\n## Persona\n## persona\n", 3, "second '## persona'"),
        ("# A\n# B\n", 2, "second '# ' heading"),
        ("# A\n## Principles\n###\n", 3, "without a title"),
        ("# A\n## Principles\n### X\nt\n### x\nt\n", 5, "second principle"),
        ("# A\n## Principles\n### X\nt\nCritique: a\nCritique: b\n", 6, "second Critique"),
        ("# A\n## Principles\n### X\nt\nRevision:\n", 3, "empty Revision"),
    ],
)
def test_bad_soul_names_line(text, line, words):
    with pytest.raises(UserError) as info:
        parse_soul(text, "my/SOUL.md")
    assert info.value.message.startswith(f"my/SOUL.md, line {line}: ")
    assert words in info.value.message
    assert info.value.remediation


def test_empty_soul():
    with pytest.raises(UserError, match="empty"):
        parse_soul("\n\n")


def test_fenced_code_is_text():
    soul = parse_soul("# A\n## Persona\n```\n# not a heading\n## nor this\n```\n")
    assert "# not a heading" in soul.persona


WEATHER = {
    "name": "weather",
    "description": "Weather for a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
    "returns": {"type": "string"},
    "command": ["python3", "weather.py"],
}


def _interface(*tools: dict) -> str:
    return json.dumps({"tools": list(tools)})


def test_parse_interface_round_trip():
    interface = parse_interface(_interface(WEATHER))
    assert interface.tools[0] == Tool(
        "weather", "Weather for a city.", WEATHER["parameters"], {"type": "string"},
        ("python3", "weather.py"),
    )  # fmt: skip
    assert parse_interface(render_interface(interface)) == interface
    assert interface.all_tools()[0] is PYTHON
    assert interface.get("python") is PYTHON and interface.get("nope") is None
    assert parse_interface("") == Interface()


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (
            {"parameters": {"type": "objekt"}},
            "tool 1 ('weather'), parameters: not a valid JSON Schema",
        ),
        (
            {"parameters": {"type": "object", "properties": {"a": {"minLength": -1}}}},
            "properties/a/minLength",
        ),
        ({"parameters": {"type": "string"}}, 'must have "type": "object"'),
        ({"parameters": []}, "must be an object"),
        ({"returns": {"type": 5}}, "returns: not a valid JSON Schema"),
        ({"name": "python"}, "built-in calculator"),
        ({"name": "2fast"}, "name: '2fast' is not a tool name"),
        ({"description": " "}, "description: missing"),
        ({"command": "ls -l"}, "command: must be a list"),
        ({"colour": "red"}, "unknown field 'colour'"),
    ],
)
def test_bad_tool_names_tool_and_field(change, words):
    with pytest.raises(UserError) as info:
        parse_interface(_interface({**WEATHER, **change}), "interface.json")
    assert words in info.value.message, info.value.message
    assert info.value.message.startswith("interface.json, tool 1")


def test_interface_file_errors():
    with pytest.raises(UserError, match="line 1: malformed JSON"):
        parse_interface("{", "interface.json")
    with pytest.raises(UserError, match="second tool named 'weather'"):
        parse_interface(_interface(WEATHER, WEATHER))
    with pytest.raises(UserError, match="unknown field 'extra'"):
        parse_interface('{"tools": [], "extra": 1}')


def test_check_arguments_uses_the_schema():
    tool = parse_interface(_interface(WEATHER)).tools[0]
    assert check_arguments(tool, {"city": "Paris"}) is None
    assert "'city' is a required property" in check_arguments(tool, {})
    assert check_arguments(PYTHON, {"expression": 3}) is not None
