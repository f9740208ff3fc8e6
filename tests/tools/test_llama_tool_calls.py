"""Tool calling in ``LlamaCppChatModel``: a scripted stand-in for ``llama_cpp.Llama`` checks what
is sent and how replies are parsed; one slow test asks the real Qwen model."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_tests.unit_tests import ChatModelUnitTests

from appkit.models import llama_cpp
from appkit.models.llama_cpp import LlamaCppChatModel, _to_openai, parse_tool_calls


@tool
def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression."""
    return "42"


@tool
def date_time(timezone: str = "UTC") -> str:
    """Tell the date."""
    return "today"


class FakeLlama:
    """Streams scripted content pieces (or forced tool-call argument pieces) like llama-cpp."""

    def __init__(self, pieces: list[str], forced: list[str] | None = None):
        self.pieces, self.forced = pieces, forced
        self.requests: list[dict[str, Any]] = []
        self.prompts: list[str] = []
        self.n_tokens = 0

    def create_chat_completion(self, messages, stream, **params):
        self.requests.append({"messages": messages, **params})
        for piece in self.pieces:
            yield {"choices": [{"delta": {"content": piece}, "finish_reason": None}]}
        for piece in self.forced or ():
            yield {"choices": [{"delta": {"content": None, "tool_calls": [
                {"index": 0, "id": "x", "type": "function",
                 "function": {"name": "calculator", "arguments": piece}}]}, "finish_reason": None}]}
        yield {"choices": [{"delta": {}, "finish_reason": "stop"}]}
        self.n_tokens = 40 + len(self.pieces)

    def create_completion(self, prompt, stream, **params):
        self.prompts.append(prompt)
        for piece in self.pieces:
            yield {"choices": [{"text": piece, "finish_reason": None}]}
        yield {"choices": [{"text": "", "finish_reason": "stop"}]}


def model_with(monkeypatch, fake: FakeLlama, *, template: bool = True,
               tools: bool = True) -> LlamaCppChatModel:
    loaded = llama_cpp._Loaded(fake, threading.Lock(), template, supports_tools=tools)
    monkeypatch.setattr(LlamaCppChatModel, "warm_up", lambda self: loaded)
    return LlamaCppChatModel(model_path="fake.gguf", model_name="fake")


QWEN_CALL = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "6*7"}}\n</tool_call>'


def test_without_tools_nothing_changes(monkeypatch) -> None:
    fake = FakeLlama(["Hel", "lo", " <tool_call>", " there"])
    llm = model_with(monkeypatch, fake)
    assert [c.content for c in llm.stream("hi")][:4] == ["Hel", "lo", " <tool_call>", " there"]
    reply = llm.invoke("hi")
    assert reply.content == "Hello <tool_call> there" and reply.tool_calls == []
    assert reply.usage_metadata["output_tokens"] == 4
    assert all("tools" not in r and "tool_choice" not in r for r in fake.requests)


def test_bound_tools_reach_the_chat_template_and_calls_come_back(monkeypatch) -> None:
    fake = FakeLlama(["Let me compute.", "\n<tool", "_call>\n{\"name\": \"calculator\", ",
                      '"arguments": {"expression": "6*7"}}\n</tool_call>'])
    llm = model_with(monkeypatch, fake).bind_tools([calculator, date_time])
    reply = llm.invoke("what is 6*7?")
    sent = fake.requests[-1]
    assert [t["function"]["name"] for t in sent["tools"]] == ["calculator", "date_time"]
    assert "tool_choice" not in sent  # "auto": the template decides, no grammar
    assert reply.content == "Let me compute."
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [
        ("calculator", {"expression": "6*7"})]
    assert reply.response_metadata["finish_reason"] == "tool_calls"
    assert reply.usage_metadata["total_tokens"] > 0


def test_streaming_holds_back_the_call_and_delivers_it_whole(monkeypatch) -> None:
    fake = FakeLlama(["Let me ", "compute. <", "tool_call>\n", '{"name": "calculator", ',
                      '"arguments": {"expression": "6*7"}}', "\n</tool_call>"])
    llm = model_with(monkeypatch, fake).bind_tools([calculator])
    chunks = list(llm.stream("6*7?"))
    assert "".join(c.content for c in chunks[:-1]) == "Let me compute. "
    assert all("<" not in c.content for c in chunks)
    total = chunks[0]
    for c in chunks[1:]:
        total += c
    assert total.tool_calls[0]["args"] == {"expression": "6*7"}
    assert chunks[-1].usage_metadata is not None


def test_bare_json_calls_of_small_models_count(monkeypatch) -> None:
    fake = FakeLlama(['{"name": "calculator", ', '"arguments": {"expression": "2+2"}}'])
    reply = model_with(monkeypatch, fake).bind_tools([calculator]).invoke("2+2?")
    assert reply.content == "" and reply.tool_calls[0]["args"] == {"expression": "2+2"}


def test_json_that_is_not_a_call_stays_content(monkeypatch) -> None:
    fake = FakeLlama(['{"name": "Ada", ', '"arguments": "none"}'])
    reply = model_with(monkeypatch, fake).bind_tools([calculator]).invoke("json please")
    assert reply.content == '{"name": "Ada", "arguments": "none"}' and reply.tool_calls == []


def test_malformed_blocks_become_invalid_tool_calls() -> None:
    text, calls, invalid = parse_tool_calls("<tool_call>{not json}</tool_call>")
    assert (text, calls) == ("", []) and invalid[0]["args"] == "{not json}"
    text, calls, _ = parse_tool_calls(
        '<tool_call>{"name": "a", "arguments": "{\\"x\\": 1}"}</tool_call> then '
        '<tool_call>{"name": "b", "parameters": {}}')
    assert [(c["name"], c["args"]) for c in calls] == [("a", {"x": 1}), ("b", {})]
    assert text == "then"


def test_a_named_tool_choice_is_forced_with_llama_cpps_grammar(monkeypatch) -> None:
    fake = FakeLlama([], forced=['{"expression": ', '"2 + 2"}'])
    llm = model_with(monkeypatch, fake).bind_tools([calculator, date_time],
                                                  tool_choice="calculator")
    reply = llm.invoke("two plus two")
    assert fake.requests[-1]["tool_choice"] == {"type": "function",
                                                "function": {"name": "calculator"}}
    assert reply.tool_calls[0]["name"] == "calculator"
    assert reply.tool_calls[0]["args"] == {"expression": "2 + 2"}


def test_tool_choice_values(monkeypatch) -> None:
    llm = model_with(monkeypatch, FakeLlama(["x"]))
    assert llm.bind_tools([calculator], tool_choice="any").kwargs["tool_choice"]["function"] == \
        {"name": "calculator"}
    assert llm.bind_tools([calculator, date_time], tool_choice="any").kwargs["tool_choice"] == "auto"
    with pytest.raises(ValueError, match="not one of the bound tools"):
        llm.bind_tools([calculator], tool_choice="shell")


def test_tool_choice_none_sends_no_tools(monkeypatch) -> None:
    fake = FakeLlama(["plain"])
    reply = model_with(monkeypatch, fake).bind_tools([calculator], tool_choice="none").invoke("x")
    assert reply.content == "plain" and "tools" not in fake.requests[-1]


def test_templates_without_tools_get_the_tool_prompt_in_the_system_message(monkeypatch) -> None:
    fake = FakeLlama([QWEN_CALL])
    llm = model_with(monkeypatch, fake, tools=False).bind_tools([calculator])
    history = [SystemMessage("Be brief."), HumanMessage("6*7?"),
               AIMessage("", tool_calls=[{"name": "calculator", "args": {"expression": "6*7"},
                                          "id": "c1"}]),
               ToolMessage("42", tool_call_id="c1"), HumanMessage("and 7*6?")]
    reply = llm.invoke(history)
    sent = fake.requests[-1]
    assert "tools" not in sent
    system = sent["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("Be brief.\n\n# Tools")
    assert '"name": "calculator"' in system["content"]
    assert sent["messages"][2] == {"role": "assistant", "content": (
        '<tool_call>\n{"name": "calculator", "arguments": {"expression": "6*7"}}\n</tool_call>')}
    assert sent["messages"][3] == {"role": "user",
                                   "content": "<tool_response>\n42\n</tool_response>"}
    assert reply.tool_calls[0]["name"] == "calculator"


def test_base_models_get_the_tool_prompt_in_the_completion_prompt(monkeypatch) -> None:
    fake = FakeLlama([QWEN_CALL])
    reply = model_with(monkeypatch, fake, template=False, tools=False).bind_tools(
        [calculator]).invoke("6*7?")
    assert "<tools>" in fake.prompts[-1] and reply.tool_calls[0]["name"] == "calculator"


def test_assistant_tool_calls_reach_the_template_with_object_arguments() -> None:
    message = AIMessage("", tool_calls=[{"name": "calculator", "args": {"expression": "1+1"},
                                         "id": "c9"}])
    assert _to_openai(message) == {"role": "assistant", "content": "", "tool_calls": [
        {"id": "c9", "type": "function",
         "function": {"name": "calculator", "arguments": {"expression": "1+1"}}}]}


class TestLlamaCppToolCallingUnit(ChatModelUnitTests):
    """langchain-tests' unit suite with tool calling on (no model file is read)."""

    @property
    def chat_model_class(self) -> type[LlamaCppChatModel]:
        return LlamaCppChatModel

    @property
    def chat_model_params(self) -> dict:
        return {"model_path": "/models/qwen.gguf", "model_name": "qwen2.5-coder-0.5b"}

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return False


@pytest.mark.slow
def test_qwen_calls_the_calculator_for_arithmetic() -> None:
    from appkit.config import Profile
    from appkit.models import make_chat_model
    from appkit.tools.agent import Agent
    from appkit.tools.calculator import calculator_tool

    llm = make_chat_model(Profile(), max_tokens=96, temperature=0.0)
    # Start from an empty context: llama.cpp reuses the previous call's prompt prefix, and at this
    # model size that can tip a greedy choice between calling the tool and answering directly.
    llm.llama.reset()
    result = Agent(llm, [calculator_tool()], max_steps=3).run("What is 1234 * 5678?")
    calls = [s for s in result.tool_calls if s.name == "calculator"]
    assert calls, json.dumps(result.to_dict(), indent=1, default=str)
    assert calls[0].output == "7006652"
