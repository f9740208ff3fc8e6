"""Chat and embedding models behind any OpenAI-compatible endpoint (llama.cpp server, vLLM, a
hosted API, another ``appkit serve``).

The profile names the endpoint as a URL (``chat.model`` or ``embedding.model``); the model name
follows a ``#``: ``http://127.0.0.1:8080/v1#qwen``. The key comes from ``$APPKIT_OPENAI_API_KEY`` or
``$OPENAI_API_KEY`` (a local server needs none).
"""

from __future__ import annotations

import os
import threading
from typing import Any

from langchain_core.embeddings import Embeddings

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


def _api_key() -> str:
    return os.environ.get("APPKIT_OPENAI_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none"


class OpenAICompatEmbeddings(Embeddings):
    """Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint.

    Texts are sent as they are (no tiktoken pre-tokenisation, which would need a download), and
    :attr:`identity` names the endpoint's model, so a Chroma collection is stamped with it.

    Example:
        >>> from appkit.models.openai_compat import OpenAICompatEmbeddings
        >>> emb = OpenAICompatEmbeddings("http://127.0.0.1:8081/v1#nomic")  # nothing sent yet
        >>> emb.identity
        'openai:nomic'

    Args:
        url: ``http://host:port/v1#model``.
        batch_size: texts per request.
    """

    def __init__(self, url: str, *, batch_size: int = 64):
        self.base_url, self.model = split_endpoint(url)
        self.batch_size = batch_size
        self._inner: Any = None
        self._lock = threading.Lock()

    @property
    def identity(self) -> str:
        """What a collection is stamped with: the endpoint's model name."""
        return f"openai:{self.model}"

    def _client(self) -> Any:
        with self._lock:
            if self._inner is None:
                lc_openai = require("langchain_openai", extra="openai", package="langchain-openai")
                self._inner = lc_openai.OpenAIEmbeddings(
                    base_url=self.base_url, model=self.model, api_key=_api_key(),
                    check_embedding_ctx_length=False, chunk_size=self.batch_size,
                )
            return self._inner

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._client().embed_documents(list(texts)) if texts else []

    def embed_query(self, text: str) -> list[float]:
        return self._client().embed_query(text)


_embedders: dict[tuple[str, int], OpenAICompatEmbeddings] = {}
_embedders_lock = threading.Lock()


def openai_embeddings(url: str, *, batch_size: int = 64) -> OpenAICompatEmbeddings:
    """One :class:`OpenAICompatEmbeddings` per endpoint and batch size per process."""
    with _embedders_lock:
        key = (url, batch_size)
        if key not in _embedders:
            _embedders[key] = OpenAICompatEmbeddings(url, batch_size=batch_size)
        return _embedders[key]
