"""``calculator``: exact arithmetic for the model, evaluated from a parsed expression tree.

Only numbers, ``+ - * / // % **``, parentheses and a few math functions are accepted; names,
attributes, subscripts, comprehensions and calls to anything else are rejected before evaluation,
so the tool cannot reach Python. Sizes are bounded (expression length, exponent, result digits),
so ``9**9**9`` is refused instead of freezing the process. (A few dozen lines of ``ast`` walking:
the packaged alternatives, ``numexpr`` or ``simpleeval``, are not dependencies of the core.)

Example:
    >>> from appkit.tools.calculator import evaluate
    >>> evaluate("1234 * 5678")
    '7006652'
    >>> evaluate("sqrt(2) ^ 2")
    '2'
"""

from __future__ import annotations

import ast
import math
import operator
from typing import Any

from langchain_core.tools import BaseTool, StructuredTool, ToolException

MAX_CHARS = 300
MAX_EXPONENT = 1000
MAX_DIGITS = 400

_BINARY = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
    ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCTIONS = {
    "sqrt": math.sqrt, "log": math.log, "log10": math.log10, "log2": math.log2, "exp": math.exp,
    "sin": math.sin, "cos": math.cos, "tan": math.tan, "abs": abs, "round": round,
    "floor": math.floor, "ceil": math.ceil, "min": min, "max": max, "factorial": math.factorial,
}
_CONSTANTS = {"pi": math.pi, "e": math.e, "tau": math.tau}


def _check_size(value: Any) -> Any:
    if isinstance(value, complex):
        raise ToolException("the result is not a real number")
    if isinstance(value, int) and abs(value) >= 10**MAX_DIGITS:
        raise ToolException(f"the result has more than {MAX_DIGITS} digits")
    if isinstance(value, float) and not math.isfinite(value):
        raise ToolException("the result is not a finite number")
    return value


def _eval(node: ast.AST) -> Any:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            if abs(right) > MAX_EXPONENT:
                raise ToolException(f"exponents above {MAX_EXPONENT} are not supported")
            if abs(left) > 1 and right * math.log10(abs(left)) > MAX_DIGITS:
                raise ToolException(f"the result has more than {MAX_DIGITS} digits")
        if isinstance(node.op, (ast.Div, ast.FloorDiv, ast.Mod)) and right == 0:
            raise ToolException("division by zero")
        try:
            return _check_size(_BINARY[type(node.op)](left, right))
        except (OverflowError, ValueError, TypeError) as exc:
            raise ToolException(f"cannot compute {ast.unparse(node)}: {exc}") from exc
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCTIONS and not node.keywords):
        args = [_eval(a) for a in node.args]
        if node.func.id == "factorial" and (len(args) != 1 or args[0] > 300):
            raise ToolException("factorial takes one integer up to 300")
        try:
            return _check_size(_FUNCTIONS[node.func.id](*args))
        except (TypeError, ValueError) as exc:
            raise ToolException(f"{node.func.id}: {exc}") from exc
    allowed = ", ".join(sorted(_FUNCTIONS))
    raise ToolException(f"unsupported expression element '{ast.unparse(node)}'; use numbers, "
                        f"+ - * / // % ** ( ), pi, e and the functions {allowed}")


def evaluate(expression: str) -> str:
    """Evaluate an arithmetic expression and return the result as text.

    ``^`` means power and ``×``/``÷`` are accepted, as people write them. Whole-number results
    print without a decimal point; others with 12 significant digits.

    Raises:
        ToolException: for anything but arithmetic, with what to write instead.
    """
    text = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    if not text:
        raise ToolException("the expression is empty")
    if len(text) > MAX_CHARS:
        raise ToolException(f"the expression is longer than {MAX_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ToolException(f"not an arithmetic expression: {expression!r}") from exc
    value = _eval(tree)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.12g}" if isinstance(value, float) else str(value)


def calculator_tool() -> BaseTool:
    """The ``calculator`` tool."""
    return StructuredTool.from_function(
        evaluate, name="calculator", handle_tool_error=True,
        description=("Evaluate an arithmetic expression such as '2 * (3 + 4)' exactly and return "
                     "the number. Use it for arithmetic on numbers given in the question."),
    )


FACTORIES = {"calculator": lambda ctx: calculator_tool()}
