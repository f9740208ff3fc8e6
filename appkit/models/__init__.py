"""Model catalogue and adapters; :func:`make_chat_model` and :func:`make_embeddings` build them
from a profile. Backends import lazily, so importing this package loads no model library.

Example:
    >>> from appkit.config import Profile
    >>> from appkit.models import make_chat_model
    >>> llm = make_chat_model(Profile())  # doctest: +SKIP  (resolves the packaged Qwen model)
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from appkit.models.catalogue import (
    ModelSpec,
    get_spec,
    list_models,
    register_model,
    resolve_model,
)

if TYPE_CHECKING:
    from langchain_core.embeddings import Embeddings
    from langchain_core.language_models import BaseChatModel

    from appkit.config import Profile

# One embedder per model and settings per process: the server's per-key apps and the UI share it.
_embeddings: dict[tuple, Any] = {}
_embeddings_lock = threading.Lock()

__all__ = [
    "ModelSpec",
    "get_spec",
    "list_models",
    "register_model",
    "resolve_model",
    "make_chat_model",
    "make_embeddings",
]


def make_chat_model(profile: Profile, model: str | None = None, **overrides: Any) -> BaseChatModel:
    """Build the profile's chat model (nothing is loaded until the first call).

    Args:
        profile: supplies the model name, context length, threads and generation settings.
        model: another catalogue name, GGUF path or endpoint URL, instead of the profile's.
        overrides: generation settings to change, e.g. ``max_tokens=64``.
    """
    name = model or profile.chat.model
    g = profile.chat.generation
    settings = dict(
        max_tokens=g.max_tokens, temperature=g.temperature, top_k=g.top_k, top_p=g.top_p,
        repeat_penalty=g.repeat_penalty, stop=list(g.stop), seed=g.seed,
    )
    settings.update(overrides)
    if name.startswith(("http://", "https://")):
        from appkit.models.openai_compat import make_openai_chat_model

        return make_openai_chat_model(name, **settings)
    spec, path = resolve_model(name)
    if spec.format == "hf":  # tuned models a GGUF cannot hold (soft prompts, prefixes)
        from appkit.models.transformers_chat import TransformersChatModel

        return TransformersChatModel(
            model_path=str(path), adapter_path=spec.lineage.get("adapter_path", ""),
            model_name=spec.name, chat_template=spec.role == "chat", **settings)
    from appkit.models.llama_cpp import LlamaCppChatModel

    return LlamaCppChatModel(
        model_path=str(path), model_name=spec.name, n_ctx=profile.chat.n_ctx,
        n_threads=profile.chat.n_threads, lora_path=spec.lineage.get("lora_path", ""), **settings,
    )


def make_embeddings(profile: Profile, model: str | None = None) -> Embeddings:
    """Build the profile's embedding model with its backend (loaded on first use)."""
    name = model or profile.embedding.model
    if name.startswith(("http://", "https://")):
        from appkit.models.openai_compat import openai_embeddings

        return openai_embeddings(name, batch_size=profile.embedding.batch_size)
    spec, path = resolve_model(name)
    identity = spec.name if not spec.local_path else str(path)
    cfg = profile.embedding
    key = (str(path), identity, cfg.backend, cfg.batch_size, cfg.max_seq_length)
    with _embeddings_lock:
        if key not in _embeddings:
            _embeddings[key] = _build_embeddings(path, identity, cfg)
        return _embeddings[key]


def _onnx_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(m) for m in ("onnxruntime", "tokenizers"))


def _build_embeddings(path: Any, identity: str, cfg: Any) -> Embeddings:
    backend = cfg.backend
    if backend == "auto":
        backend = "onnx-int8" if _onnx_available() else "torch"
    if backend == "onnx-int8":
        from appkit.models.onnx_int8 import OnnxInt8Embeddings

        return OnnxInt8Embeddings(str(path), name=identity, batch_size=cfg.batch_size)
    from appkit.models.sentence_transformers import SentenceTransformerEmbeddings

    return SentenceTransformerEmbeddings(str(path), name=identity, batch_size=cfg.batch_size,
                                         max_seq_length=cfg.max_seq_length)
