"""Chat models behind any OpenAI-compatible endpoint (llama.cpp server, vLLM, a hosted API).

The profile names the endpoint as a URL; the model name follows a ``#``:
``http://127.0.0.1:8080/v1#qwen``. The key comes from ``$APPKIT_OPENAI_API_KEY`` or
``$OPENAI_API_KEY`` (a local server needs none).
"""

from __future__ import annotations

import os
from typing import Any

from appkit.lazy import require


def split_endpoint(url: str) -> tuple[str, str]:
    """``"http://h/v1#name"`` -> ``("http://h/v1", "name")``; the name defaults to ``"default"``."""
    base, _, name = url.partition("#")
    return base.rstrip("/"), name or "default"


def make_openai_chat_model(url: str, **settings: Any) -> Any:
    """A ``langchain_openai.ChatOpenAI`` pointed at ``url`` with the profile's generation settings."""
    lc_openai = require("langchain_openai", extra="openai", package="langchain-openai")
    base, name = split_endpoint(url)
    key = os.environ.get("APPKIT_OPENAI_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none"
    extra_body = {"top_k": settings.get("top_k"), "repeat_penalty": settings.get("repeat_penalty")}
    return lc_openai.ChatOpenAI(
        base_url=base, model=name, api_key=key,
        max_tokens=settings.get("max_tokens"), temperature=settings.get("temperature"),
        top_p=settings.get("top_p"), stop=settings.get("stop") or None,
        seed=settings.get("seed"), extra_body=extra_body, stream_usage=True,
    )
