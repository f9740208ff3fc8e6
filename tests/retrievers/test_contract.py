"""The contract every registered retriever keeps (see ``retrievers/base.py``), one test per name.

Retrievers that need a model get fakes: the hashing embedder, and the fake chat model for query
expansion and the LLM reranker (the cross-encoder path has its own tests).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.documents import Document

from appkit.errors import AppkitError
from appkit.retrieval import make_retriever, retriever_names
from retrievers.registry import set_filter

NAMES = retriever_names()


def test_this_layer_registers_its_retrievers():
    assert {"dense", "mmr", "bm25", "hybrid", "rerank", "multi-query", "context"} <= set(NAMES)


@pytest.fixture(params=NAMES)
def retriever(request, corpus):
    return make_retriever(corpus.context(), request.param)


def test_returns_at_most_k_documents_with_ids_and_scores(retriever, corpus):
    docs = retriever.invoke("Apollo Moon landing 1969 lunar module")
    assert 1 <= len(docs) <= corpus.profile.retrieval.k
    for d in docs:
        assert isinstance(d, Document) and d.id and d.page_content
        assert d.metadata["source"] and isinstance(d.metadata.get("chunk_index"), int)
        assert isinstance(d.metadata.get("score", d.metadata.get("relevance")), float)
    assert len({d.id for d in docs}) == len(docs)
    assert Path(docs[0].metadata["source"]).name == "space.txt"


def test_empty_query_is_a_clear_error(retriever):
    for query in ("", "   \n"):
        with pytest.raises(AppkitError, match="empty"):
            retriever.invoke(query)


def test_very_long_query_is_not_an_error(retriever):
    long_query = "What happened on the Moon in 1969 with Apollo? " * 2000  # ~20k words
    docs = retriever.invoke(long_query)
    assert isinstance(docs, list) and docs


def test_filter_on_unknown_field_is_a_clear_error(retriever):
    set_filter(retriever, {"colour": "red"})
    if type(retriever).__name__ == "ChromaDenseRetriever":
        # The core's plain dense retriever passes filters to Chroma unchecked: a field no chunk has
        # matches nothing, so the documented result is an empty list. This layer's retrievers check.
        assert retriever.invoke("fruit") == []
        return
    with pytest.raises(AppkitError, match="'colour', which no chunk has"):
        retriever.invoke("fruit")


def test_filter_on_known_field_restricts(retriever):
    set_filter(retriever, {"file_type": "md"})
    docs = retriever.invoke("Apollo Moon apples generators")
    assert docs and all(d.metadata["file_type"] == "md" for d in docs)


def test_empty_store_gives_nothing(request, empty_corpus):
    for name in NAMES:
        assert make_retriever(empty_corpus.context(), name).invoke("anything") == [], name


async def test_async_invoke(retriever):
    docs = await retriever.ainvoke("cider apples")
    assert docs and isinstance(docs[0], Document)
