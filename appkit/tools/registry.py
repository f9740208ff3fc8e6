"""Tools by name: built-ins, ``@register_tool`` functions and ``appkit.tools`` entry points.

A profile's ``tools.enabled`` names the tools the agent may offer the model. Every tool is a LangChain
``BaseTool``; a registry entry is a factory that builds it from a :class:`ToolContext` (the profile,
the retriever, an HTTP transport), so tools that need the app's parts get them without globals.

A tool is *sensitive* when running it has effects beyond answering (network egress, writes). The
agent runs a sensitive tool only when the user's own words ask for it (see
:func:`requested_by_user`), never because a document or a tool result said so.

Example:
    >>> from appkit.tools import register_tool, tool_names
    >>> @register_tool
    ... def shout(text: str) -> str:
    ...     \"\"\"Upper-case a text.\"\"\"
    ...     return text.upper()
    >>> "shout" in tool_names()
    True
    >>> shout.invoke({"text": "hi"})
    'HI'
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any

from langchain_core.tools import BaseTool

from appkit.config import Profile
from appkit.errors import ConfigError

ENTRY_POINT_GROUP = "appkit.tools"
SENSITIVE = "appkit_sensitive"
INTENT = "appkit_intent"


@dataclass
class ToolContext:
    """What a tool factory may use.

    Attributes:
        profile: the use case (document folders, HTTP allow-list, limits).
        retriever: returns the app's retriever; called only when a document tool is built.
        http_transport: an ``httpx`` transport for the HTTP tool (tests pass a mock one).
        now: returns the current time as an aware ``datetime`` (tests pass a fixed clock).
    """

    profile: Profile
    retriever: Callable[[], Any] | None = None
    http_transport: Any = None
    now: Callable[[], Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


ToolFactory = Callable[[ToolContext], BaseTool]
_factories: dict[str, ToolFactory] = {}
_entry_points_loaded = False
_broken: dict[str, str] = {}


def register_tool_factory(name: str, factory: ToolFactory) -> None:
    """Make ``factory`` available as a tool called ``name`` in ``tools.enabled``."""
    _factories[name] = factory


def mark_sensitive(tool: BaseTool, intent: Sequence[str] | Callable[[dict, str], bool] = ()) -> BaseTool:
    """Let ``tool`` run only when the user's request asks for it.

    Args:
        tool: the tool to mark.
        intent: words any of which in the user's message count as asking for it (the tool's name
            always counts), or a function ``(args, user_text) -> bool`` deciding per call.
    """
    tool.metadata = {**(tool.metadata or {}), SENSITIVE: True,
                     INTENT: intent if callable(intent) else tuple(intent)}
    return tool


def register_tool(func: Callable | None = None, *, name: str | None = None, sensitive: bool = False,
                  intent: Sequence[str] = ()) -> Any:
    """Decorator: turn a typed, documented function into a LangChain tool and register it.

    The docstring is the description the model reads; the type hints become the argument schema.

    Args:
        func: the function (when used as ``@register_tool`` without arguments).
        name: the tool's name (default: the function's).
        sensitive: run only when the user asks for it (see :func:`mark_sensitive`).
        intent: words that count as asking for a sensitive tool.

    Returns:
        The ``StructuredTool``, also registered under its name.
    """
    from langchain_core.tools import StructuredTool

    def wrap(f: Callable) -> BaseTool:
        built = StructuredTool.from_function(f, name=name or f.__name__, handle_tool_error=True)
        if sensitive:
            mark_sensitive(built, intent)
        register_tool_factory(built.name, lambda ctx: built)
        return built

    return wrap(func) if func is not None else wrap


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _factories:
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - one broken plugin must not hide the rest
            _broken[ep.name] = f"{type(exc).__name__}: {exc}"
            continue
        if isinstance(obj, BaseTool):
            _factories[ep.name] = lambda ctx, obj=obj: obj
        elif callable(obj):
            _factories[ep.name] = obj
        else:
            _broken[ep.name] = "an entry point must name a BaseTool or a factory(ToolContext)"


def tool_names() -> list[str]:
    """Every registered tool name (entry points included)."""
    _load_builtins()
    _load_entry_points()
    return sorted(_factories)


def make_tools(ctx: ToolContext, names: Sequence[str] | None = None) -> list[BaseTool]:
    """Build the named tools (default: the profile's ``tools.enabled``).

    Raises:
        ConfigError: naming ``tools.enabled`` and the known tools.
    """
    _load_builtins()
    chosen = list(names if names is not None else ctx.profile.tools.enabled)
    where = str(ctx.profile.source) if ctx.profile.source else None
    tools = []
    for name in chosen:
        if name not in _factories:
            _load_entry_points()
        if name in _broken:
            raise ConfigError(f"tool '{name}' failed to load: {_broken[name]}", path=where,
                              key="tools.enabled")
        if name not in _factories:
            raise ConfigError(f"unknown tool '{name}'; known: {', '.join(tool_names())}",
                              path=where, key="tools.enabled")
        tools.append(_factories[name](ctx))
    return tools


def requested_by_user(tool: BaseTool, args: dict[str, Any], user_text: str) -> bool:
    """Whether the user's own words ask for this call (always true for tools that are not sensitive).

    Only the user's messages count: text from documents and tool results never does, so an
    instruction planted in a document cannot start a sensitive tool.
    """
    meta = tool.metadata or {}
    if not meta.get(SENSITIVE):
        return True
    intent = meta.get(INTENT, ())
    if callable(intent):
        return bool(intent(args, user_text))
    words = (tool.name, *intent)
    return any(re.search(rf"(?<!\w){re.escape(w)}(?!\w)", user_text, re.IGNORECASE) for w in words)


_builtins_loaded = False


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    from appkit.tools import calculator, clock, documents, http_json

    for module in (calculator, clock, documents, http_json):
        for name, factory in module.FACTORIES.items():
            _factories.setdefault(name, factory)
