from __future__ import annotations

import json

import pytest

from appkit.cli import main
from appkit.testing.tools import FakeToolCallingModel
from appkit.tools.agent import Agent
from appkit.tools.calculator import calculator_tool


@pytest.fixture
def fake_agent(monkeypatch: pytest.MonkeyPatch) -> list:
    made: list = []

    def from_app(cls, app, *, names=None, **kwargs):
        llm = FakeToolCallingModel(script=[{"name": "calculator", "args": {"expression": "6*7"}},
                                           "It is 42."])
        made.append((names, kwargs))
        return Agent(llm, [calculator_tool()], **kwargs)

    monkeypatch.setattr(Agent, "from_app", classmethod(from_app))
    return made


def test_agent_prints_the_trace_and_the_answer(fake_agent, capsys) -> None:
    assert main(["agent", "what is 6 times 7?", "--max-steps", "3", "--tools", "calculator"]) == 0
    out = capsys.readouterr().out
    assert '→ [2] tool calculator {"expression": "6*7"} (ok' in out
    assert out.rstrip().endswith("It is 42.")
    assert fake_agent == [(["calculator"], {"max_steps": 3})]


def test_agent_json(fake_agent, capsys) -> None:
    assert main(["agent", "6*7?", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["text"] == "It is 42." and data["steps"][1]["output"] == "42"


def test_agent_needs_a_question(fake_agent, capsys) -> None:
    assert main(["agent", "  "]) == 2
    assert "the question is empty" in capsys.readouterr().err
