"""The official ``openai`` client, unchanged, against the server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import httpx
import openai
import pytest

from appkit.config import Profile, ServerConfig
from appkit.server.app import create_app
from appkit.testing import FakeChatModel
from tests.server.conftest import ALICE, serve_in_thread

pytestmark = pytest.mark.allow_hosts(["127.0.0.1"])

BETA = "# Beta\n\n## Budget\n\nThe beta budget is forty thousand euros for the third quarter.\n"
QUESTION = [{"role": "user", "content": "What is the beta budget?"}]


@pytest.fixture
def url(profile: Profile, embeddings) -> Iterator[str]:
    p = dataclasses.replace(profile, server=ServerConfig(api_keys={"alice": ALICE},
                                                         rate_limit_per_minute=8))
    app = create_app(p, embeddings=embeddings, environ={},
                     chat_model=FakeChatModel(default="Forty thousand euros [1]."))
    with serve_in_thread(app) as base:
        httpx.post(f"{base}/ingest", headers={"Authorization": f"Bearer {ALICE}"},
                   json={"files": [{"name": "beta.md", "content": BETA}]}).raise_for_status()
        yield f"{base}/v1"


def test_models_chat_stream_and_embeddings(url: str) -> None:
    client = openai.OpenAI(base_url=url, api_key=ALICE, max_retries=0)
    assert [m.id for m in client.models.list()][:2] == ["appkit-rag", "appkit-agent"]

    reply = client.chat.completions.create(model="appkit-rag", messages=QUESTION, max_tokens=64)
    assert reply.choices[0].message.content == "Forty thousand euros [1]."
    assert reply.choices[0].finish_reason == "stop"
    assert reply.model_extra["appkit"]["citations"][0]["source"] == "beta.md"

    stream = client.chat.completions.create(model="appkit-rag", messages=QUESTION, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert "".join(pieces) == "Forty thousand euros [1]." and len(pieces) > 3
    assert chunks[-1].usage is not None

    emb = client.embeddings.create(model="appkit-embeddings", input=["beta budget", "gamma"])
    assert len(emb.data) == 2 and len(emb.data[0].embedding) == 256


def test_errors_map_to_the_clients_exceptions(url: str) -> None:
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url, api_key="sk-wrong-0123456789abcdef").models.list()
    client = openai.OpenAI(base_url=url, api_key=ALICE, max_retries=0)
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="gpt-99", messages=QUESTION)
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="appkit-rag", messages=[
            {"role": "assistant", "content": "no question"}])
    with pytest.raises(openai.RateLimitError):
        for _ in range(10):
            client.models.list()


def test_the_async_client_streams_too(url: str) -> None:
    import asyncio

    async def run() -> str:
        async with openai.AsyncOpenAI(base_url=url, api_key=ALICE, max_retries=0) as client:
            stream = await client.chat.completions.create(model="appkit-rag", messages=QUESTION,
                                                          stream=True)
            return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    assert asyncio.run(run()) == "Forty thousand euros [1]."


def test_tool_calls_round_trip_through_the_client(profile: Profile, embeddings) -> None:
    from appkit.testing.tools import FakeToolCallingModel

    llm = FakeToolCallingModel(script=[{"name": "calculator", "args": {"expression": "6*7"}},
                                       "It is 42."])
    p = dataclasses.replace(profile, server=ServerConfig(rate_limit_per_minute=0))
    app = create_app(p, embeddings=embeddings, chat_models={"tooly": llm}, environ={})
    tools = [{"type": "function", "function": {
        "name": "calculator", "description": "Evaluate arithmetic.",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string"}}}}}]
    with serve_in_thread(app) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="none", max_retries=0)
        messages = [{"role": "user", "content": "6*7?"}]
        first = client.chat.completions.create(model="tooly", messages=messages, tools=tools)
        call = first.choices[0].message.tool_calls[0]
        assert first.choices[0].finish_reason == "tool_calls"
        assert (call.function.name, call.function.arguments) == ("calculator",
                                                                 '{"expression": "6*7"}')
        messages += [first.choices[0].message.model_dump(exclude_none=True),
                     {"role": "tool", "tool_call_id": call.id, "content": "42"}]
        second = client.chat.completions.create(model="tooly", messages=messages, tools=tools)
        assert second.choices[0].message.content == "It is 42."
