"""The ``calculator`` tool: arithmetic by walking the expression's AST (never ``eval``)."""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import Field

from interleaf.tools.errors import ToolError
from interleaf.tools.tool import tool

__all__ = ["ARITHMETIC_PATTERN", "calculator", "evaluate"]

ARITHMETIC_PATTERN = r"^(?:[0-9.+\-*/%^(), ]|mod|round)+$"
"""What the ``calculator`` tool's ``expression`` may hold: numbers, ``+ - * / % ^ ( ) ,``, spaces,
the word ``mod`` and the one function ``round`` (``round(x, 2)``: a question asking for 2 decimals
is answered by copying the result; without it a small model copied all 12 decimals, or divided by
the 2). The turn grammar enforces it, so a small model cannot call the calculator with a variable
name, another function or prose: the arguments it writes are arithmetic. The length cap (200)
is the tool's own validation: written into the pattern as ``{1,200}``, the bounded repetition of an
alternation measured up to 17 ms per token mask with xgrammar 0.2.8, against 0.03 ms unbounded."""
_MOD = re.compile(r"\bmod\b")

_MAX_EXPONENT = 10_000
_MAX_FACTORIAL = 1_000
_MAX_INT_DIGITS = 4_000
_MAX_LENGTH = 1_000

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}


def _factorial(n: Any) -> int:
    if not isinstance(n, int) or n < 0 or n > _MAX_FACTORIAL:
        raise ToolError(f"factorial({n!r}) is not supported: use an integer from 0 to {_MAX_FACTORIAL}")
    return math.factorial(n)


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt,
    "exp": math.exp,
    "log": math.log,
    "log10": math.log10,
    "log2": math.log2,
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
    "atan2": math.atan2,
    "sinh": math.sinh,
    "cosh": math.cosh,
    "tanh": math.tanh,
    "degrees": math.degrees,
    "radians": math.radians,
    "abs": abs,
    "round": round,
    "floor": math.floor,
    "ceil": math.ceil,
    "min": min,
    "max": max,
    "gcd": math.gcd,
    "lcm": math.lcm,
    "comb": math.comb,
    "perm": math.perm,
    "factorial": _factorial,
    "hypot": math.hypot,
}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau, "inf": math.inf}


def _check_size(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > _MAX_INT_DIGITS * 3.33:
        raise ToolError(f"the result has more than {_MAX_INT_DIGITS} digits; use the python tool for big numbers")
    return value


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float | complex)
        and not isinstance(node.value, bool)
    ):
        return node.value
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        raise ToolError(f"unknown name {node.id!r}; constants: {', '.join(_CONSTANTS)}")
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow) and isinstance(right, int | float) and abs(right) > _MAX_EXPONENT:
            raise ToolError(f"exponent {right!r} is too large (limit {_MAX_EXPONENT})")
        return _check_size(_BINARY[type(node.op)](left, right))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords:
        fn = _FUNCTIONS.get(node.func.id)
        if fn is None:
            raise ToolError(f"unknown function {node.func.id!r}; functions: {', '.join(_FUNCTIONS)}")
        return _check_size(fn(*(_eval(arg) for arg in node.args)))
    raise ToolError(
        f"unsupported syntax {ast.unparse(node)!r}: use numbers, + - * / // % **, parentheses, "
        "and the listed functions and constants"
    )


def evaluate(expression: str) -> int | float | complex:
    """Evaluate an arithmetic expression safely; raise ``ToolError`` with the reason otherwise."""
    if len(expression) > _MAX_LENGTH:
        raise ToolError(f"expression is {len(expression)} characters long; the limit is {_MAX_LENGTH}")
    text = _MOD.sub("%", expression.strip().replace("^", "**"))
    # Parentheses left open at the end are closed there, as pocket calculators do: a small model
    # copying a nested expression most often drops the last ")".
    text += ")" * max(0, text.count("(") - text.count(")"))
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ToolError(f"cannot parse {expression!r}: {exc.msg} at column {exc.offset}") from None
    try:
        return _eval(tree)
    except ToolError:
        raise
    except ZeroDivisionError:
        raise ToolError(f"division by zero in {expression!r}") from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise ToolError(f"cannot evaluate {expression!r}: {exc}") from None


@tool(name="calculator", timeout_s=5.0, max_output_tokens=256)
def calculator(expression: Annotated[str, Field(pattern=ARITHMETIC_PATTERN, max_length=200)]) -> str:
    """Evaluate an arithmetic expression and return the result.

    Args:
        expression: numbers with + - * / % (or mod), ^ (power), parentheses, round(x, n), e.g. "(12 + 7) * 3 mod 5".
    """
    return str(evaluate(expression))
