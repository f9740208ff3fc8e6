"""A client that goes away mid-stream must not leave the model busy (or its lock held)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from langchain_core.messages import AIMessageChunk
from langchain_core.outputs import ChatGenerationChunk

from appkit.config import Profile, ServerConfig
from appkit.server.app import create_app
from appkit.testing import FakeChatModel
from tests.server.conftest import serve_in_thread

pytestmark = pytest.mark.allow_hosts(["127.0.0.1"])


class SlowModel(FakeChatModel):
    """Streams a word every 50 ms while holding a lock, like llama.cpp does."""

    lock: object = None
    finished: object = None

    def _stream(self, messages, stop=None, run_manager=None, **kwargs) -> Iterator:
        with self.lock:
            try:
                for i in range(200):
                    time.sleep(0.05)
                    yield ChatGenerationChunk(message=AIMessageChunk(content=f"w{i} "))
            finally:
                self.finished.set()


def test_a_disconnected_stream_is_closed_and_releases_the_model(profile: Profile, embeddings) -> None:
    model = SlowModel(lock=threading.Lock(), finished=threading.Event())
    p = dataclasses.replace(profile, server=ServerConfig(rate_limit_per_minute=0))
    app = create_app(p, embeddings=embeddings, chat_models={"slow": model}, environ={})
    with serve_in_thread(app) as url:
        request = {"model": "slow", "stream": True,
                   "messages": [{"role": "user", "content": "talk"}]}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=request, timeout=30) as r:
            for line in r.iter_lines():
                if "w1 " in line:
                    break  # leave after two words of two hundred
        assert model.finished.wait(timeout=5), "the generation kept running after the disconnect"
        assert model.lock.acquire(timeout=5)
        model.lock.release()
        assert httpx.get(f"{url}/health", timeout=10).status_code == 200
