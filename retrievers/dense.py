"""``DenseRetriever``: nearest chunks in the profile's Chroma collection, with filters and MMR.

Extends the core's dense retriever with checked metadata filters (see :mod:`retrievers.filters`) and
maximal marginal relevance (MMR): ``fetch_k`` nearest chunks are re-picked so that each new one is
relevant to the query but unlike the ones already picked, which helps when a folder holds many
near-duplicate chunks.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores.utils import maximal_marginal_relevance
from pydantic import ConfigDict

from appkit.errors import AppkitError
from retrievers.base import check_query
from retrievers.filters import check_where


class DenseRetriever(BaseRetriever):
    """Cosine nearest neighbours over Chroma, optionally diversified with MMR.

    Each document carries ``metadata["relevance"]`` (cosine similarity) and ``metadata["score"]``
    (the same, or the MMR order's relevance).

    Example:
        >>> from retrievers.dense import DenseRetriever
        >>> r = DenseRetriever(store=store, k=5, where={"file_type": "pdf"}, mmr=True)  # doctest: +SKIP
        >>> [d.metadata["source"] for d in r.invoke("budget for Q3")]  # doctest: +SKIP

    Attributes:
        store: an ``appkit.store.chroma.ChromaStore``.
        k: how many chunks to return.
        where: a Chroma metadata filter; a field no chunk has raises an error.
        mmr: re-pick the ``fetch_k`` nearest chunks for diversity.
        fetch_k: candidates MMR chooses from.
        mmr_lambda: 1 is pure relevance, 0 pure diversity.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: Any
    k: int = 4
    where: dict | None = None
    mmr: bool = False
    fetch_k: int = 20
    mmr_lambda: float = 0.5

    def embed_query(self, query: str) -> list[float]:
        return self.store.embeddings.embed_query(query)

    def search_by_vector(self, vector: Sequence[float], k: int,
                         where: dict | None = None) -> list[Document]:
        """The ``k`` nearest chunks to ``vector`` (MMR applied when enabled)."""
        if k < 1:  # an empty collection answers with no ids; counting costs ~1 ms per 2k chunks
            return []
        check_where(self.store, where)
        n = max(k, self.fetch_k) if self.mmr else k
        include = ["documents", "metadatas", "distances"] + (["embeddings"] if self.mmr else [])
        try:
            res = self.store.collection.query(query_embeddings=[list(vector)], n_results=n,
                                              where=where, include=include)
        except ValueError as exc:  # chromadb rejects malformed filters with ValueError
            raise AppkitError(f"bad filter {where!r}: {exc}") from exc
        docs = []
        for i, t, m, d in zip(res["ids"][0], res["documents"][0], res["metadatas"][0],
                              res["distances"][0]):
            rel = round(1.0 - float(d), 6)
            docs.append(Document(page_content=t or "",
                                 metadata={**(m or {}), "relevance": rel, "score": rel}, id=i))
        if self.mmr and docs:
            picked = maximal_marginal_relevance(np.asarray(vector, dtype=np.float32),
                                                list(res["embeddings"][0]), k=min(k, len(docs)),
                                                lambda_mult=self.mmr_lambda)
            docs = [docs[i] for i in picked]
        return docs[:k]

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                k: int | None = None, where: dict | None = None) -> list[Document]:
        """``k`` and ``where`` override the attributes for one call: ``invoke(q, k=3)``."""
        check_query(query)
        k = self.k if k is None else k
        where = self.where if where is None else where
        return self.search_by_vector(self.embed_query(query), k, where)
