from __future__ import annotations

import pytest
from langchain_core.tools import ToolException

from appkit.tools.calculator import calculator_tool, evaluate


@pytest.mark.parametrize("expression, expected", [
    ("1234 * 5678", "7006652"),
    ("2^10", "1024"),
    ("7 × 6 ÷ 2", "21"),
    ("10 / 4", "2.5"),
    ("0.1 + 0.2", "0.3"),
    ("-(3 - 5) ** 2", "-4"),
    ("17 // 5 + 17 % 5", "5"),
    ("sqrt(16) + abs(-2) + max(1, 9, 3)", "15"),
    ("round(pi, 4)", "3.1416"),
    ("factorial(10)", "3628800"),
    ("2**100", str(2**100)),
])
def test_arithmetic_is_exact(expression: str, expected: str) -> None:
    assert evaluate(expression) == expected


@pytest.mark.parametrize("expression, message", [
    ("__import__('os').system('ls')", "unsupported expression element"),
    ("open('/etc/passwd').read()", "unsupported expression element"),
    ("(1).__class__.__bases__", "unsupported expression element"),
    ("[x for x in range(9)]", "unsupported expression element"),
    ("x + 1", "unsupported expression element"),
    ("lambda: 1", "unsupported expression element"),
    ("9**9**9", "exponents above"),
    ("10**1000", "more than 400 digits"),
    ("1 / 0", "division by zero"),
    ("factorial(100000)", "factorial takes one integer up to 300"),
    ("(-8) ** 0.5", "not a real number"),
    ("1e308 * 10", "not a finite number"),
    ("sqrt(-1)", "sqrt"),
    ("1 +", "not an arithmetic expression"),
    ("", "empty"),
    ("1+" * 200 + "1", "longer than"),
])
def test_anything_but_arithmetic_is_refused_with_a_reason(expression: str, message: str) -> None:
    with pytest.raises(ToolException, match=message):
        evaluate(expression)


def test_the_tool_reports_errors_to_the_model_instead_of_raising() -> None:
    tool = calculator_tool()
    reply = tool.invoke({"type": "tool_call", "id": "c1", "name": "calculator",
                         "args": {"expression": "1/0"}})
    assert reply.status == "error" and reply.content == "division by zero"
    assert tool.invoke({"expression": "6*7"}) == "42"
