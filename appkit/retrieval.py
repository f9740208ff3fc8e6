"""Retrievers by name: the core registers ``dense``; the ``retrievers`` layer adds more.

A profile's ``retrieval.retriever`` names a factory in this registry. Names the core does not know
are looked up in the ``appkit.retrievers`` entry-point group, so packages above the core (BM25,
hybrid, rerankers) plug in without the core importing them.

Example:
    >>> from appkit.retrieval import register_retriever, retriever_names
    >>> "dense" in retriever_names()
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from appkit.config import Profile
from appkit.errors import AppkitError, ConfigError

ENTRY_POINT_GROUP = "appkit.retrievers"


@dataclass
class RetrieverContext:
    """What a retriever factory may use: the profile, its store and, lazily, its chat model."""

    profile: Profile
    store: Any  # appkit.store.chroma.ChromaStore
    chat_model: Callable[[], Any] | None = None


RetrieverFactory = Callable[[RetrieverContext], BaseRetriever]
_factories: dict[str, RetrieverFactory] = {}
_entry_points_loaded = False
_broken: dict[str, str] = {}


def register_retriever(name: str, factory: RetrieverFactory) -> None:
    """Make ``factory`` available as ``retrieval.retriever = name``."""
    _factories[name] = factory


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name not in _factories:
            try:
                _factories[ep.name] = ep.load()
            except Exception as exc:  # noqa: BLE001 - one broken plugin must not hide the rest
                _broken[ep.name] = f"{type(exc).__name__}: {exc}"


def retriever_names() -> list[str]:
    """Every registered retriever name (entry points included)."""
    _load_entry_points()
    return sorted(_factories)


def make_retriever(ctx: RetrieverContext, name: str | None = None) -> BaseRetriever:
    """Build the named retriever (default: the profile's).

    Raises:
        ConfigError: naming ``retrieval.retriever`` and the known names.
    """
    name = name or ctx.profile.retrieval.retriever
    if name not in _factories:
        _load_entry_points()
    if name in _broken:
        raise ConfigError(f"retriever '{name}' failed to load: {_broken[name]}",
                          key="retrieval.retriever")
    if name not in _factories:
        raise ConfigError(
            f"unknown retriever '{name}'; known: {', '.join(retriever_names())} "
            "(bm25, hybrid, rerank and the others come with: pip install 'appkit[retrievers]')",
            path=str(ctx.profile.source) if ctx.profile.source else None,
            key="retrieval.retriever",
        )
    return _factories[name](ctx)


class ChromaDenseRetriever(BaseRetriever):
    """Nearest chunks by cosine similarity in the profile's Chroma collection.

    Each document carries ``metadata["relevance"]`` (cosine similarity, higher is better).

    Example:
        >>> from appkit.retrieval import ChromaDenseRetriever
        >>> r = ChromaDenseRetriever(store=my_store, k=4)  # doctest: +SKIP
        >>> r.invoke("what did we decide?")  # doctest: +SKIP

    Attributes:
        store: an ``appkit.store.chroma.ChromaStore``.
        k: how many chunks to return.
        where: an optional Chroma metadata filter, e.g. ``{"file_type": "pdf"}``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: Any
    k: int = 4
    where: dict | None = None

    def _get_relevant_documents(self, query: str, *,
                                run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        if not query.strip():
            raise AppkitError("the query is empty")
        return self.store.search(query, self.k, where=self.where)


register_retriever(
    "dense", lambda ctx: ChromaDenseRetriever(store=ctx.store, k=ctx.profile.retrieval.k)
)
