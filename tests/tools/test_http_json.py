from __future__ import annotations

import dataclasses

import httpx
import pytest

from appkit.config import Profile, ToolsConfig
from appkit.errors import ConfigError
from appkit.tools.http_json import HttpJsonTool, named_by_user
from appkit.tools.registry import ToolContext, make_tools, requested_by_user


class Recorder:
    """A mock transport that records every request it is asked to send."""

    def __init__(self, response: httpx.Response | None = None):
        self.requests: list[httpx.Request] = []
        self.response = response or httpx.Response(200, json={"status": "green", "n": 3})

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.response


def tool_with(recorder: Recorder, hosts=("api.example.com", "127.0.0.1:9000"), **kw) -> HttpJsonTool:
    return HttpJsonTool(allow_hosts=hosts, transport=httpx.MockTransport(recorder), **kw)


def call(tool: HttpJsonTool, url: str):
    return tool.invoke({"type": "tool_call", "id": "1", "name": "http_json", "args": {"url": url}})


def test_fetches_json_from_an_allowed_host() -> None:
    rec = Recorder()
    assert tool_with(rec).invoke({"url": "https://api.example.com/status"}) == \
        '{"status": "green", "n": 3}'
    assert [str(r.url) for r in rec.requests] == ["https://api.example.com/status"]


@pytest.mark.parametrize("url, reason", [
    ("https://evil.example.net/x", "host 'evil.example.net' is not allowed"),
    ("https://api.example.com.evil.net/x", "is not allowed"),
    ("file:///etc/passwd", "only http and https"),
    ("ftp://api.example.com/x", "only http and https"),
    ("https://user:pw@api.example.com/x", "credentials"),
    ("http://127.0.0.1:9001/x", "host '127.0.0.1' is not allowed"),
    ("http://127.0.0.1/x", "host '127.0.0.1' is not allowed"),
])
def test_other_hosts_schemes_and_ports_are_refused_before_any_request(url: str, reason: str) -> None:
    rec = Recorder()
    reply = call(tool_with(rec), url)
    assert reply.status == "error" and reason in reply.content
    assert rec.requests == []


def test_a_port_entry_allows_only_that_port() -> None:
    rec = Recorder()
    assert call(tool_with(rec), "http://127.0.0.1:9000/x").status == "success"


@pytest.mark.parametrize("response, reason", [
    (httpx.Response(302, headers={"location": "https://evil.net/"}), "redirects are not followed"),
    (httpx.Response(200, content=b"<html>hi</html>"), "did not return JSON"),
    (httpx.Response(500, json={}), "answered HTTP 500"),
    (httpx.Response(200, content=b"[" + b"1," * 600 + b"1]"), "larger than 1000 bytes"),
])
def test_redirects_errors_non_json_and_oversize_bodies(response: httpx.Response, reason: str) -> None:
    reply = call(tool_with(Recorder(response), max_bytes=1000), "https://api.example.com/x")
    assert reply.status == "error" and reason in reply.content


def test_network_failures_are_reported_not_raised() -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    tool = HttpJsonTool(allow_hosts=("api.example.com",), transport=httpx.MockTransport(fail))
    reply = call(tool, "https://api.example.com/x")
    assert reply.status == "error" and "ConnectError" in reply.content


def test_the_profile_must_list_hosts_before_the_tool_is_enabled() -> None:
    profile = Profile(tools=ToolsConfig(enabled=("http_json",)))
    with pytest.raises(ConfigError, match="tools.http_allow_hosts"):
        make_tools(ToolContext(profile))


def test_the_profile_tool_is_sensitive_and_needs_the_host_in_the_users_words() -> None:
    profile = Profile(tools=ToolsConfig(enabled=("http_json",), http_allow_hosts=("api.example.com",),
                                        http_timeout_s=3.0, http_max_bytes=500))
    (tool,) = make_tools(ToolContext(profile, http_transport=httpx.MockTransport(Recorder())))
    assert (tool.timeout_s, tool.max_bytes) == (3.0, 500)
    args = {"url": "https://api.example.com/status"}
    assert requested_by_user(tool, args, "What does https://api.example.com/status say?")
    assert requested_by_user(tool, args, "check the API.example.com status")
    assert not requested_by_user(tool, args, "Summarise the onboarding handbook")
    assert not named_by_user({"url": "not a url"}, "anything")
    assert dataclasses.replace(profile).tools.http_allow_hosts == ("api.example.com",)
