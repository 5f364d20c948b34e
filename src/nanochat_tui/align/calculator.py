"""The built-in ``python`` tool: a calculator in a restricted evaluator (nanochat's tool, safely).

An expression is parsed with ``ast`` and evaluated node by node; nothing reaches ``eval``. Allowed:
int/float literals (and string literals for ``"abc".count("b")``-style counting, which nanochat's
calculator supports), + − × / // % **, unary ±, parentheses, and ``.count(...)`` on a string literal.
Refused with a message: names (so ``__import__``, builtins and variables), attributes other than
``str.count``, calls, subscripts, comprehensions, lambdas, inputs over ``MAX_CHARS``, powers and
products that would get huge, and evaluation past ``TIME_LIMIT`` seconds.
"""

from __future__ import annotations

import ast
import math
import operator
import time
from dataclasses import dataclass

MAX_CHARS = 500
MAX_DIGITS = 1000  # integer results are bounded to about this many decimal digits
MAX_EXPONENT = 10_000
TIME_LIMIT = 0.5  # seconds of evaluation

_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}


class CalculatorError(ValueError):
    """An expression the calculator refuses; ``str()`` says why in words for the chat."""


@dataclass(frozen=True)
class Result:
    ok: bool
    output: str  # the value, or the reason it was refused


def _digits(value: int | float) -> float:
    if isinstance(value, float) or value == 0:
        return 1.0
    return math.log10(abs(value)) + 1


class _Evaluator:
    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def eval(self, node: ast.AST) -> int | float | str:
        if time.monotonic() > self.deadline:
            raise CalculatorError(f"the expression takes more than {TIME_LIMIT}s to evaluate")
        if isinstance(node, ast.Expression):
            return self.eval(node.body)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float | str):
                raise CalculatorError(f"{type(node.value).__name__} values are not supported")
            return node.value
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](self._number(node.operand))
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            left, right = self._number(node.left), self._number(node.right)
            self._check_size(node.op, left, right)
            try:
                return _BINARY[type(node.op)](left, right)
            except ZeroDivisionError:
                raise CalculatorError("division by zero") from None
            except OverflowError:
                raise CalculatorError("the result is too large") from None
        if isinstance(node, ast.Call):
            return self._count(node)
        if isinstance(node, ast.Name):
            raise CalculatorError(
                f"names like {node.id!r} are not allowed: the calculator only does arithmetic"
            )
        if isinstance(node, ast.Attribute):
            raise CalculatorError(f"attribute access (.{node.attr}) is not allowed")
        raise CalculatorError(f"{type(node).__name__} is not allowed: use numbers and + - * / ** %")

    def _number(self, node: ast.AST) -> int | float:
        value = self.eval(node)
        if isinstance(value, str):
            raise CalculatorError("arithmetic on strings is not allowed")
        return value

    def _count(self, node: ast.Call) -> int:
        func = node.func
        if isinstance(func, ast.Name):
            raise CalculatorError(
                f"names like {func.id!r} are not allowed: the calculator only does arithmetic"
            )
        if not (
            isinstance(func, ast.Attribute)
            and func.attr == "count"
            and isinstance(func.value, ast.Constant)
            and isinstance(func.value.value, str)
            and len(node.args) == 1
            and not node.keywords
        ):
            if isinstance(func, ast.Attribute) and func.attr != "count":
                raise CalculatorError(f"attribute access (.{func.attr}) is not allowed")
            raise CalculatorError('calls are not allowed (only "text".count("x"))')
        needle = self.eval(node.args[0])
        if not isinstance(needle, str):
            raise CalculatorError('.count takes a string: "text".count("x")')
        return func.value.value.count(needle)

    @staticmethod
    def _check_size(op: ast.operator, left: int | float, right: int | float) -> None:
        if isinstance(op, ast.Pow):
            if abs(right) > MAX_EXPONENT and abs(left) not in (0, 1):
                raise CalculatorError(
                    f"the power is too large (exponent {right} > {MAX_EXPONENT}): the calculator "
                    "keeps results small"
                )
            ints = isinstance(left, int) and isinstance(right, int)
            if ints and right > 0 and abs(left) > 1 and right * math.log10(abs(left)) >= MAX_DIGITS:
                raise CalculatorError(
                    f"the result would have more than {MAX_DIGITS} digits: the calculator "
                    "keeps results small"
                )
        elif isinstance(op, ast.Mult) and _digits(left) + _digits(right) > MAX_DIGITS + 1:
            raise CalculatorError(f"the result would have more than {MAX_DIGITS} digits")


def evaluate(expression: str) -> int | float:
    """The value of an arithmetic ``expression``; ``CalculatorError`` says why one is refused."""
    if len(expression) > MAX_CHARS:
        raise CalculatorError(f"the expression is longer than {MAX_CHARS} characters")
    try:
        tree = ast.parse(expression.strip(), mode="eval")
        value = _Evaluator(time.monotonic() + TIME_LIMIT).eval(tree)
    except SyntaxError:
        raise CalculatorError("not a valid expression") from None
    except RecursionError:
        raise CalculatorError("the expression is nested too deeply") from None
    if isinstance(value, str):
        raise CalculatorError("the result must be a number")
    return value


def run_tool(expression: str) -> Result:
    """The calculator as a chat tool: the value as text, or a refusal message (never raises)."""
    try:
        value = evaluate(expression)
    except CalculatorError as err:
        return Result(False, f"error: {err}")
    return Result(True, str(value))
