"""The server with a real llama.cpp model: concurrent requests queue on the model's lock and all
succeed; catalogue models answer by name."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from appkit.config import ChatConfig, GenerationConfig, Profile
from appkit.server.app import create_app
from tests.server.conftest import serve_in_thread

pytestmark = [pytest.mark.slow, pytest.mark.allow_hosts(["127.0.0.1"])]


def test_concurrent_requests_queue_and_none_fails(profile: Profile, embeddings, docs_dir) -> None:
    p = dataclasses.replace(profile, chat=ChatConfig(
        model="smollm2-135m", n_ctx=2048, n_threads=1, generation=GenerationConfig(max_tokens=8)))
    app = create_app(p, embeddings=embeddings, environ={})
    app.state.appkit.users.get("local").ingest([docs_dir])
    with serve_in_thread(app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0, timeout=600)

        def ask(i: int) -> str:
            if i % 2:
                stream = client.chat.completions.create(
                    model="appkit-rag", stream=True,
                    messages=[{"role": "user", "content": f"What is the beta budget? ({i})"}])
                return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
            reply = client.chat.completions.create(
                model="smollm2-135m", max_tokens=8,
                messages=[{"role": "user", "content": f"Count to {i + 3}."}])
            return reply.choices[0].message.content

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(ask, range(8)))
    assert all(a.strip() for a in answers), answers
