"""Model catalogue and adapters; :func:`make_chat_model` and :func:`make_embeddings` build them
from a profile. Backends import lazily, so importing this package loads no model library.

Example:
    >>> from appkit.config import Profile
    >>> from appkit.models import make_chat_model
    >>> llm = make_chat_model(Profile())  # doctest: +SKIP  (resolves the packaged Qwen model)
"""

from __future__ import annotations

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
    from appkit.models.llama_cpp import LlamaCppChatModel

    spec, path = resolve_model(name)
    return LlamaCppChatModel(
        model_path=str(path), model_name=spec.name, n_ctx=profile.chat.n_ctx,
        n_threads=profile.chat.n_threads, lora_path=spec.lineage.get("lora_path", ""), **settings,
    )


def make_embeddings(profile: Profile, model: str | None = None) -> Embeddings:
    """Build the profile's embedding model (loaded on first use)."""
    from appkit.models.sentence_transformers import SentenceTransformerEmbeddings

    name = model or profile.embedding.model
    if name.startswith(("http://", "https://")):
        from appkit.models.openai_compat import openai_embeddings

        return openai_embeddings(name, batch_size=profile.embedding.batch_size)
    spec, path = resolve_model(name)
    return SentenceTransformerEmbeddings(
        str(path), name=spec.name if spec.local_path == "" else str(path),
        batch_size=profile.embedding.batch_size, max_seq_length=profile.embedding.max_seq_length,
    )
