"""Tools for the local chat model, as LangChain tools, and the agent loop that calls them.

Built-in tools: ``search_documents`` (the retriever), ``read_document`` (files inside the profile's
document folders only), ``calculator``, ``date_time`` and ``http_json`` (GET from the profile's
allow-listed hosts). Add your own with :func:`register_tool` or an ``appkit.tools`` entry point,
and list the names the agent may use in the profile::

    [tools]
    enabled = ["search_documents", "calculator", "date_time", "http_json"]
    http_allow_hosts = ["api.example.com"]
    max_steps = 6
    time_limit_s = 120

No tool runs shell commands. Retrieved text is data: see :mod:`appkit.tools.agent`.

Example:
    >>> from appkit.tools import Agent, calculator_tool
    >>> from appkit.testing.tools import FakeToolCallingModel
    >>> llm = FakeToolCallingModel(script=[{"name": "calculator", "args": {"expression": "2**10"}},
    ...                                    "1024"])
    >>> Agent(llm, [calculator_tool()]).run("2 to the 10th?").tool_calls[0].output
    '1024'
"""

import importlib
from typing import Any

# Names resolve on first use, so `appkit --help` (which imports appkit.tools.cli) stays light.
_WHERE = {
    "Agent": "agent", "AgentResult": "agent", "AgentStep": "agent",
    "calculator_tool": "calculator", "evaluate": "calculator",
    "ToolContext": "registry", "make_tools": "registry", "mark_sensitive": "registry",
    "register_tool": "registry", "register_tool_factory": "registry",
    "requested_by_user": "registry", "tool_names": "registry",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(f"appkit.tools.{_WHERE[name]}"), name)
    raise AttributeError(name)


__all__ = [
    "Agent",
    "AgentResult",
    "AgentStep",
    "ToolContext",
    "calculator_tool",
    "evaluate",
    "make_tools",
    "mark_sensitive",
    "register_tool",
    "register_tool_factory",
    "requested_by_user",
    "tool_names",
]
