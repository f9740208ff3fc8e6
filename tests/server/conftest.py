"""Server fixtures: the FastAPI app over a temporary profile with fake models, driven in process
by Starlette's test client (no socket), and a helper that serves it with uvicorn on 127.0.0.1."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from appkit.config import Profile, ServerConfig
from appkit.server.app import create_app
from appkit.testing import FakeChatModel
from tests.helpers import free_port

ALICE = "sk-alice-0123456789abcdef"
BOB = "sk-bob-0123456789abcdef00"


@pytest.fixture
def make_client(profile: Profile, embeddings) -> Callable[..., TestClient]:
    """Build the app and a test client; ``server`` settings and fakes are keyword arguments."""

    def make(*, keys: dict[str, str] | None = None, rate: int = 0, max_body: int = 1_000_000,
             chat_model: Any = None, environ: dict[str, str] | None = None,
             client_host: str = "127.0.0.1", profile_changes: dict | None = None,
             **kwargs: Any) -> TestClient:
        server = ServerConfig(api_keys=keys or {}, rate_limit_per_minute=rate,
                              max_body_bytes=max_body)
        p = dataclasses.replace(profile, server=server, **(profile_changes or {}))
        app = create_app(p, embeddings=embeddings,
                         chat_model=chat_model if chat_model is not None else FakeChatModel(
                             default="The beta budget is forty thousand euros [1]."),
                         environ=environ or {}, **kwargs)
        return TestClient(app, client=(client_host, 50000), raise_server_exceptions=False)

    return make


@contextlib.contextmanager
def serve_in_thread(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in this process; yields the base URL."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
