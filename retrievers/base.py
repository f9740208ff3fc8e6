"""What every retriever in this package shares: query checks, scores on documents, store look-ups.

The contract every retriever here keeps (``tests/retrievers/test_contract.py`` checks it):

* ``invoke(query)`` returns at most ``k`` LangChain ``Document`` s, best first, each with its store
  ``id`` and ``metadata["score"]`` (the retriever's own ranking score: higher is better, comparable
  only within one result list).
* ``metadata["relevance"]`` is the cosine similarity of chunk and query wherever the retriever knows
  it (dense, hybrid, rerank and the wrappers around them), so ``retrieval.min_relevance`` keeps its
  meaning. Pure BM25 knows no cosine and leaves it out; the RAG chain then counts every hit as relevant.
* An empty or blank query raises :class:`~appkit.errors.AppkitError` ("the query is empty").
* A query longer than a model's window is truncated by that model (MiniLM: 256 tokens, a
  cross-encoder: its ``max_length``; the chat model sees at most :data:`MAX_LLM_QUERY_CHARS`); BM25
  uses every term. Long queries are never an error.
* An empty store gives an empty list.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from langchain_core.documents import Document

from appkit.errors import AppkitError

MAX_LLM_QUERY_CHARS = 2000


def check_query(query: Any) -> str:
    """Return the query, or raise a clear error for an empty or non-text one."""
    if not isinstance(query, str):
        raise AppkitError(f"the query must be text, got {type(query).__name__}")
    if not query.strip():
        raise AppkitError("the query is empty")
    return query


def with_scores(doc: Document, **values: Any) -> Document:
    """A copy of ``doc`` with ``values`` merged into its metadata (documents are shared objects)."""
    return Document(page_content=doc.page_content, metadata={**doc.metadata, **values}, id=doc.id)


def fetch_documents(store: Any, ids: Sequence[str]) -> dict[str, Document]:
    """Stored chunks by id (missing ids are left out)."""
    if not ids:
        return {}
    return {d.id: d for d in store.get(ids=list(ids))}


def cosine_relevance(store: Any, query_vector: Sequence[float], ids: Iterable[str]) -> dict[str, float]:
    """Cosine similarity of the query to stored chunks, from the vectors Chroma keeps."""
    ids = list(ids)
    if not ids:
        return {}
    res = store.collection.get(ids=ids, include=["embeddings"])
    q = np.asarray(query_vector, dtype=np.float32)
    q = q / (np.linalg.norm(q) or 1.0)
    out = {}
    for i, v in zip(res["ids"], res["embeddings"]):
        v = np.asarray(v, dtype=np.float32)
        out[i] = round(float(v @ q / (np.linalg.norm(v) or 1.0)), 6)
    return out

