from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langchain_core.tools import tool

from appkit.app import App
from appkit.config import Profile, ToolsConfig
from appkit.errors import AppkitError
from appkit.testing import FakeChatModel
from appkit.testing.tools import FakeToolCallingModel
from appkit.tools.agent import Agent
from appkit.tools.calculator import calculator_tool


def calc(expression: str) -> dict:
    return {"name": "calculator", "args": {"expression": expression}}


def test_the_loop_runs_the_tool_and_feeds_the_result_back() -> None:
    llm = FakeToolCallingModel(script=[calc("1234 * 5678"), "1234 × 5678 = 7006652."])
    result = Agent(llm, [calculator_tool()]).run("What is 1234 * 5678?")
    assert result.text == "1234 × 5678 = 7006652." and result.stopped == "answer"
    assert [(s.index, s.kind, s.name, s.status) for s in result.steps] == [
        (1, "model", "fake-tool-caller", "ok"), (2, "tool", "calculator", "ok"),
        (3, "model", "fake-tool-caller", "ok")]
    assert result.steps[1].input == {"expression": "1234 * 5678"}
    assert result.steps[1].output == "7006652"
    assert llm.bound_tools == ["calculator"]
    second_call = llm.calls[1]
    assert isinstance(second_call[-1], ToolMessage) and second_call[-1].content == "7006652"
    assert isinstance(second_call[-2], AIMessage) and second_call[-2].tool_calls
    assert result.usage["input_tokens"] > 0 and result.usage["output_tokens"] == 2
    assert result.to_dict()["steps"][1]["name"] == "calculator"


def test_several_calls_in_one_turn_each_get_a_step() -> None:
    llm = FakeToolCallingModel(script=[[calc("2+2"), calc("3*3")], "4 and 9"])
    result = Agent(llm, [calculator_tool()]).run("2+2 and 3*3?")
    assert [s.output for s in result.tool_calls] == ["4", "9"]


def test_step_limit() -> None:
    llm = FakeToolCallingModel(script=[calc("1+1")] * 10)
    result = Agent(llm, [calculator_tool()], max_steps=3).run("loop forever")
    assert result.stopped == "max_steps"
    assert [s.kind for s in result.steps].count("model") == 3
    assert "stopped after 3 steps" in result.text


def test_time_limit_with_a_fake_clock() -> None:
    ticks = itertools.count(0, 10)
    llm = FakeToolCallingModel(script=[calc("1+1")] * 10)
    result = Agent(llm, [calculator_tool()], time_limit_s=35,
                   clock=lambda: float(next(ticks))).run("slow")
    assert result.stopped == "time_limit"
    assert "stopped after 35 seconds" in result.text


def test_a_tool_that_outlives_the_time_limit_is_abandoned() -> None:
    @tool
    def slow_lookup(key: str) -> str:
        """Look a key up slowly."""
        time.sleep(2)
        return "late"

    llm = FakeToolCallingModel(script=[{"name": "slow_lookup", "args": {"key": "k"}}, "never"])
    start = time.monotonic()
    result = Agent(llm, [slow_lookup], time_limit_s=0.3).run("look up k")
    assert time.monotonic() - start < 1.5
    assert result.stopped == "time_limit" and result.steps[-1].status == "timeout"


def test_unknown_tools_failing_tools_and_malformed_calls_are_reported_to_the_model() -> None:
    @tool
    def broken(x: int) -> int:
        """Always fails."""
        raise RuntimeError("disk on fire")

    llm = FakeToolCallingModel(script=[{"name": "shell", "args": {"cmd": "rm -rf /"}},
                                       {"name": "broken", "args": {"x": 1}}, "fine"])
    result = Agent(llm, [broken, calculator_tool()]).run("do things")
    shell, failed = result.steps[1], result.steps[3]
    assert shell.status == "error" and "no tool named 'shell'" in shell.output
    assert failed.status == "error" and "disk on fire" in failed.output
    assert result.text == "fine"


def test_a_malformed_call_gets_a_second_chance() -> None:
    class Malformed(FakeToolCallingModel):
        def _generate(self, messages, stop=None, run_manager=None, **kwargs):
            result = super()._generate(messages, stop, run_manager, **kwargs)
            if len(self.calls) == 1:
                result.generations[0].message = AIMessage(content="", invalid_tool_calls=[
                    {"name": None, "args": "{oops", "id": "bad", "error": "not JSON",
                     "type": "invalid_tool_call"}])
            return result

    llm = Malformed(script=["ignored", "the answer"])
    result = Agent(llm, [calculator_tool()]).run("q")
    assert result.steps[0].status == "error" and result.text == "the answer"
    assert isinstance(llm.calls[1][-1], HumanMessage)
    assert "could not be read (not JSON)" in llm.calls[1][-1].content


def test_history_comes_before_the_question() -> None:
    llm = FakeToolCallingModel(script=["ok"])
    Agent(llm, []).run("and now?", history=[("first question", "first answer")])
    roles = [type(m).__name__ for m in llm.calls[0]]
    assert roles == ["SystemMessage", "HumanMessage", "AIMessage", "HumanMessage"]


def test_a_model_without_tool_calling_is_a_clear_error() -> None:
    with pytest.raises(AppkitError, match="cannot call tools"):
        Agent(FakeChatModel(), [calculator_tool()]).run("2+2")


def test_from_app_uses_the_profile_and_cites_search_results(
        profile: Profile, embeddings, docs_dir: Path) -> None:
    import dataclasses

    profile = dataclasses.replace(profile, tools=ToolsConfig(max_steps=2, time_limit_s=9))
    llm = FakeToolCallingModel(script=[{"name": "search_documents",
                                        "args": {"query": "beta budget"}}, "forty thousand [1]"])
    app = App(profile, embeddings=embeddings, chat_model=llm)
    app.ingest([docs_dir])
    agent = Agent.from_app(app)
    assert (agent.max_steps, agent.time_limit_s) == (2, 9)
    assert set(agent.tools) == {"search_documents", "calculator", "date_time"}
    result = agent.run("What is the beta budget?")
    assert result.text == "forty thousand [1]"
    assert result.citations and result.citations[0].index == 1
    assert any("beta" in c.source for c in result.citations)
