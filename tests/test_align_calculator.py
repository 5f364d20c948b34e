"""The calculator tool: arithmetic agrees with Python, escapes and huge results are refused."""

from __future__ import annotations

import time

import pytest

from nanochat_tui.align.calculator import MAX_CHARS, CalculatorError, evaluate, run_tool


@pytest.mark.parametrize(
    "expression",
    ["2 + 3 * 4", "7 / 2", "7 // 2", "-7 % 3", "2 ** 10", "-3 ** 2", "(1 + 2) * (3 - 4.5)",
     "2 ** -2", "1e3 + 0.5", "123456789 * 987654321", "+5", "10 ** 999"],
)  # fmt: skip
def test_arithmetic_matches_python(expression: str) -> None:
    # Python itself is the reference (these inputs are known safe)
    assert evaluate(expression) == eval(expression)


def test_string_count_like_nanochat() -> None:
    assert evaluate('"strawberry".count("r")') == 3
    assert run_tool('"banana".count("an")').output == "2"


@pytest.mark.parametrize(
    ("expression", "reason"),
    [
        ('__import__("os").system("true")', "attribute access (.system) is not allowed"),
        ('__import__("os")', "names like '__import__' are not allowed"),
        ("__import__", "names like '__import__'"),
        ("x + 1", "names like 'x'"),
        ("().__class__.__bases__", "attribute access (.__bases__)"),
        ("(1).real", "attribute access (.real)"),
        ('"a".upper()', "attribute access (.upper)"),
        ("open('f')", "names like 'open'"),
        ("10 ** 100000", "the power is too large"),
        ("9 ** 9 ** 9", "the power is too large"),
        ("123456789 ** 200", "more than 1000 digits"),
        ("10 ** 999 * 10 ** 999", "more than 1000 digits"),
        ("10.0 ** 400", "too large"),
        ("1 / 0", "division by zero"),
        ("[1, 2]", "List is not allowed"),
        ("lambda: 1", "Lambda is not allowed"),
        ("(x for x in ())", "is not allowed"),
        ("True + 1", "bool values are not supported"),
        ('"a" * 3', "arithmetic on strings"),
        ("1 +", "not a valid expression"),
        ("1" * (MAX_CHARS + 1), f"longer than {MAX_CHARS} characters"),
        ("(" * 200 + "1" + ")" * 200, None),
    ],
)
def test_refusals_have_a_message(expression: str, reason: str | None) -> None:
    if reason is None:  # deep but legal nesting still evaluates
        assert evaluate(expression) == 1
        return
    with pytest.raises(CalculatorError) as info:
        evaluate(expression)
    assert reason in str(info.value)
    result = run_tool(expression)
    assert not result.ok and result.output == f"error: {info.value}"


def test_refusals_are_fast() -> None:
    start = time.perf_counter()
    for expression in ("9 ** 9 ** 9 ** 9", "2 ** 10000 ** 10", "10 ** 999 * 10 ** 999 * 10"):
        assert not run_tool(expression).ok
    assert time.perf_counter() - start < 1.0
