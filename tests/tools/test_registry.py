from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest
from langchain_core.tools import tool

from appkit.config import Profile, ToolsConfig
from appkit.errors import ConfigError
from appkit.tools import registry
from appkit.tools.registry import (
    ToolContext,
    make_tools,
    register_tool,
    register_tool_factory,
    requested_by_user,
    tool_names,
)


@pytest.fixture(autouse=True)
def _restore_registry():
    saved = dict(registry._factories), dict(registry._broken), registry._entry_points_loaded
    yield
    registry._factories.clear()
    registry._factories.update(saved[0])
    registry._broken.clear()
    registry._broken.update(saved[1])
    registry._entry_points_loaded = saved[2]


def test_builtins_are_registered() -> None:
    assert {"calculator", "date_time", "search_documents", "read_document",
            "http_json"} <= set(tool_names())


def test_the_default_profile_enables_the_safe_tools() -> None:
    ctx = ToolContext(Profile(), retriever=lambda: None)
    assert [t.name for t in make_tools(ctx)] == ["search_documents", "calculator", "date_time"]


def test_decorated_functions_become_tools() -> None:
    @register_tool
    def word_count(text: str) -> int:
        """Count the words of a text."""
        return len(text.split())

    @register_tool(name="send_report", sensitive=True, intent=["email", "send"])
    def send(to: str) -> str:
        """Send the report."""
        return f"sent to {to}"

    (wc, sr) = make_tools(ToolContext(Profile()), ["word_count", "send_report"])
    assert wc.invoke({"text": "a b c"}) == 3
    assert wc.description == "Count the words of a text."
    assert requested_by_user(wc, {}, "anything")
    assert requested_by_user(sr, {"to": "x"}, "please email it to Bob")
    assert requested_by_user(sr, {"to": "x"}, "use send_report")
    assert not requested_by_user(sr, {"to": "x"}, "summarise the document")
    assert not requested_by_user(sr, {"to": "x"}, "resend is not a word match")


def test_entry_points_give_tools_or_factories(monkeypatch: pytest.MonkeyPatch) -> None:
    @tool
    def ping() -> str:
        """Answer pong."""
        return "pong"

    def factory(ctx: ToolContext):
        return ping

    import sys
    import types

    module = types.ModuleType("appkit_test_plugin")
    module.ping_tool, module.ping_factory, module.junk = ping, factory, 42
    monkeypatch.setitem(sys.modules, "appkit_test_plugin", module)
    eps = [EntryPoint("pinged", "appkit_test_plugin:ping_tool", registry.ENTRY_POINT_GROUP),
           EntryPoint("pinger", "appkit_test_plugin:ping_factory", registry.ENTRY_POINT_GROUP),
           EntryPoint("junk", "appkit_test_plugin:junk", registry.ENTRY_POINT_GROUP),
           EntryPoint("gone", "appkit_missing_module:x", registry.ENTRY_POINT_GROUP)]
    monkeypatch.setattr(registry, "entry_points", lambda group: eps)
    registry._entry_points_loaded = False
    tools = make_tools(ToolContext(Profile()), ["pinged", "pinger"])
    assert [t.invoke({}) for t in tools] == ["pong", "pong"]
    with pytest.raises(ConfigError, match="tool 'gone' failed to load: ModuleNotFoundError"):
        make_tools(ToolContext(Profile()), ["gone"])
    with pytest.raises(ConfigError, match="tool 'junk' failed to load"):
        make_tools(ToolContext(Profile()), ["junk"])


def test_unknown_tool_names_the_key_and_the_known_tools(tmp_path) -> None:
    profile = Profile(tools=ToolsConfig(enabled=("calculator", "shell")))
    with pytest.raises(ConfigError, match=r"key 'tools.enabled': unknown tool 'shell'; known: .*"
                                          r"calculator"):
        make_tools(ToolContext(profile))


def test_a_factory_registered_by_name() -> None:
    register_tool_factory("echo_profile_task", lambda ctx: tool(
        "echo_profile_task", lambda: ctx.profile.task, description="The task."))
    (t,) = make_tools(ToolContext(Profile(task="summarize")), ["echo_profile_task"])
    assert t.name == "echo_profile_task"
