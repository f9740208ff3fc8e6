"""``http_json``: GET a JSON document from a host the profile allows.

The profile's ``tools.http_allow_hosts`` is the whole list of reachable hosts (exact names; an
entry with ``:port`` allows only that port). Redirects are not followed, responses larger than
``tools.http_max_bytes`` are cut off and refused, and only ``http``/``https`` URLs without
credentials are accepted. The tool is *sensitive*: the agent runs it only when the user's message
names the URL's host, so a document cannot make it phone home.

Example:
    >>> import httpx
    >>> from appkit.tools.http_json import HttpJsonTool
    >>> mock = httpx.MockTransport(lambda request: httpx.Response(200, json={"ok": True}))
    >>> tool = HttpJsonTool(allow_hosts=("api.example.com",), transport=mock)
    >>> tool.invoke({"url": "https://api.example.com/status"})
    '{"ok": true}'
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from langchain_core.tools import BaseTool, ToolException
from pydantic import BaseModel, ConfigDict, Field

from appkit.lazy import require
from appkit.tools.registry import mark_sensitive

MAX_CHARS_TO_MODEL = 4000


class _Args(BaseModel):
    url: str = Field(description="the full http(s) URL of a JSON resource on an allowed host")


def host_allowed(url: str, allow_hosts: tuple[str, ...]) -> str:
    """The URL's ``host[:port]`` when the allow-list permits it.

    Raises:
        ToolException: saying which rule the URL broke.
    """
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https"):
        raise ToolException(f"only http and https URLs are allowed, not {url!r}")
    if parts.username or parts.password:
        raise ToolException("URLs with credentials are not allowed")
    host = (parts.hostname or "").lower()
    try:
        port = parts.port
    except ValueError as exc:
        raise ToolException(f"bad port in {url!r}") from exc
    for entry in allow_hosts:
        name, _, entry_port = entry.lower().partition(":")
        if host == name and (not entry_port or (port is not None and str(port) == entry_port)):
            return f"{host}:{port}" if port else host
    allowed = ", ".join(allow_hosts) or "none (set tools.http_allow_hosts in the profile)"
    raise ToolException(f"host '{host}' is not allowed; allowed hosts: {allowed}")


def named_by_user(args: dict[str, Any], user_text: str) -> bool:
    """True when the user's message names the host of the requested URL."""
    host = (urlsplit(str(args.get("url", ""))).hostname or "").lower()
    return bool(host) and host in user_text.lower()


class HttpJsonTool(BaseTool):
    """GET JSON from an allow-listed host.

    Example:
        >>> from appkit.tools.http_json import HttpJsonTool
        >>> HttpJsonTool(allow_hosts=("api.example.com",)).name
        'http_json'

    Attributes:
        allow_hosts: the hosts (``name`` or ``name:port``) it may reach.
        timeout_s: seconds per request.
        max_bytes: the largest response body read.
        transport: an ``httpx`` transport (tests pass ``httpx.MockTransport``).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    name: str = "http_json"
    description: str = ("Fetch a JSON document with HTTP GET from an allowed host and return it. "
                        "Only use it when the user asks for data from that URL or host.")
    args_schema: type[BaseModel] = _Args
    handle_tool_error: bool = True
    allow_hosts: tuple[str, ...] = ()
    timeout_s: float = 10.0
    max_bytes: int = 1_000_000
    transport: Any = None

    def _run(self, url: str, **_: Any) -> str:
        host_allowed(url, self.allow_hosts)
        httpx = require("httpx", extra="serve")
        try:
            with httpx.Client(transport=self.transport, timeout=self.timeout_s,
                              follow_redirects=False, trust_env=False) as client:
                with client.stream("GET", url, headers={"Accept": "application/json"}) as resp:
                    if resp.is_redirect:
                        raise ToolException(f"{url} redirects to {resp.headers.get('location')}; "
                                            "redirects are not followed")
                    body = bytearray()
                    for part in resp.iter_bytes():
                        body += part
                        if len(body) > self.max_bytes:
                            raise ToolException(f"the response is larger than {self.max_bytes} "
                                                "bytes (tools.http_max_bytes)")
        except httpx.HTTPError as exc:
            raise ToolException(f"request to {url} failed: {type(exc).__name__}: {exc}") from exc
        if resp.status_code >= 400:
            raise ToolException(f"{url} answered HTTP {resp.status_code}")
        try:
            data = json.loads(bytes(body))
        except ValueError as exc:
            raise ToolException(f"{url} did not return JSON") from exc
        text = json.dumps(data, ensure_ascii=False)
        return text if len(text) <= MAX_CHARS_TO_MODEL else text[:MAX_CHARS_TO_MODEL] + " …(cut)"


def http_json_tool(ctx: Any) -> BaseTool:
    """The profile's ``http_json`` tool (sensitive: only when the user names the host)."""
    from appkit.errors import ConfigError

    t = ctx.profile.tools
    if not t.http_allow_hosts:
        raise ConfigError("tools.enabled names 'http_json' but tools.http_allow_hosts is empty; "
                          "list the hosts it may fetch from",
                          path=str(ctx.profile.source) if ctx.profile.source else None,
                          key="tools.http_allow_hosts")
    tool = HttpJsonTool(allow_hosts=tuple(t.http_allow_hosts), timeout_s=t.http_timeout_s,
                        max_bytes=t.http_max_bytes, transport=ctx.http_transport)
    return mark_sensitive(tool, named_by_user)


FACTORIES = {"http_json": http_json_tool}
