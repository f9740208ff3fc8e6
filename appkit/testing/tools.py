"""``FakeToolCallingModel``: a scripted chat model that calls tools, for agent tests.

Example:
    >>> from appkit.testing.tools import FakeToolCallingModel
    >>> llm = FakeToolCallingModel(script=[{"name": "calculator", "args": {"expression": "2+2"}}])
    >>> llm.invoke("2+2?").tool_calls[0]["name"]
    'calculator'
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import Field

_ids = itertools.count(1)
Reply = str | dict | list | Callable[[list[BaseMessage]], Any]


class FakeToolCallingModel(BaseChatModel):
    """Answers from a script; each item is one model turn.

    A ``str`` is a plain answer, a ``dict`` (``{"name": ..., "args": {...}}``) or a list of them is
    a turn of tool calls, and a callable gets the messages and returns one of those, so a test can
    script a model that reacts to what a tool returned (for example, one that obeys a planted
    instruction). When the script runs out it answers ``default``.

    Attributes:
        script: the turns, in order.
        default: the answer once the script is used up.
        calls: the messages of every call, for assertions.
        bound_tools: the names of the tools of the last ``bind_tools``.
    """

    script: list[Any] = Field(default_factory=list)
    default: str = "Done."
    model_name: str = "fake-tool-caller"
    calls: list[list[BaseMessage]] = Field(default_factory=list)
    bound_tools: list[str] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "appkit-fake-tools"

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        from langchain_core.utils.function_calling import convert_to_openai_tool

        formatted = [convert_to_openai_tool(t) for t in tools]
        self.bound_tools = [t["function"]["name"] for t in formatted]
        return self.bind(tools=formatted, **kwargs)

    def get_num_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        self.calls.append(list(messages))
        item = self.script.pop(0) if self.script else self.default
        if callable(item):
            item = item(list(messages))
        usage = {"input_tokens": sum(len(m.text) // 4 for m in messages), "output_tokens": 1,
                 "total_tokens": 0}
        usage["total_tokens"] = usage["input_tokens"] + 1
        if isinstance(item, str):
            message = AIMessage(content=item, usage_metadata=usage)
        else:
            calls = [item] if isinstance(item, dict) else list(item)
            message = AIMessage(content="", usage_metadata=usage, tool_calls=[
                {"name": c["name"], "args": c.get("args", {}), "id": f"call_{next(_ids)}",
                 "type": "tool_call"} for c in calls])
        return ChatResult(generations=[ChatGeneration(message=message)])
