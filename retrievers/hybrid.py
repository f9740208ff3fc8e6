"""``HybridRetriever``: dense and BM25 rankings fused with weighted reciprocal rank fusion.

Dense retrieval finds paraphrases; BM25 finds rare exact terms (names, codes, numbers). Fusing the
two ranks is more robust than either: on SciFact test it lifts nDCG@10 from 0.645 (dense) and 0.686
(BM25) to about 0.72 (see ``benchmarks/RESULTS_retrievers.md``). The query is embedded once; texts
are fetched from Chroma only for the chunks returned.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from retrievers.base import check_query, cosine_relevance, fetch_documents, with_scores
from retrievers.bm25 import BM25Retriever
from retrievers.dense import DenseRetriever
from retrievers.fusion import reciprocal_rank_fusion


class HybridRetriever(BaseRetriever):
    """Dense + BM25, fused with weighted RRF.

    Each document carries ``metadata["score"]`` (the fused RRF score), ``metadata["relevance"]``
    (cosine similarity to the query) and ``dense_rank`` / ``bm25_rank`` (1-based, 0 when the chunk
    was not in that ranking's candidates).

    Example:
        >>> from retrievers.hybrid import HybridRetriever
        >>> r = HybridRetriever(dense=dense, bm25=bm25, k=10, candidates=100)  # doctest: +SKIP
        >>> r.invoke("statins and muscle pain")[0].metadata["score"]  # doctest: +SKIP

    Attributes:
        dense: the :class:`~retrievers.dense.DenseRetriever` (its MMR setting applies).
        bm25: the :class:`~retrievers.bm25.BM25Retriever` over the same store.
        k: how many chunks to return.
        candidates: how many chunks each ranking contributes before fusion.
        dense_weight: weight of the dense ranking.
        bm25_weight: weight of the BM25 ranking.
        rrf_k: the RRF constant.
        where: a Chroma metadata filter applied to both rankings.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    dense: DenseRetriever
    bm25: BM25Retriever
    k: int = 4
    candidates: int = 50
    dense_weight: float = 1.0
    bm25_weight: float = 1.0
    rrf_k: int = 60
    where: dict | None = None

    @property
    def store(self) -> Any:
        return self.dense.store

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                k: int | None = None, where: dict | None = None) -> list[Document]:
        """``k`` and ``where`` override the attributes for one call: ``invoke(q, k=3)``."""
        check_query(query)
        k = self.k if k is None else k
        where = self.where if where is None else where
        depth = max(self.candidates, k)
        vector = self.dense.embed_query(query) if self.dense_weight > 0 else None
        dense_docs = (self.dense.search_by_vector(vector, depth, where)
                      if vector is not None else [])
        bm25_ranked = (self.bm25.ranked_ids(query, depth, where)
                       if self.bm25_weight > 0 else [])
        dense_ids = [d.id for d in dense_docs]
        bm25_ids = [i for i, _ in bm25_ranked]
        fused = reciprocal_rank_fusion([dense_ids, bm25_ids], [self.dense_weight, self.bm25_weight],
                                       k=self.rrf_k)[:k]
        by_id = {d.id: d for d in dense_docs}
        missing = [i for i, _ in fused if i not in by_id]
        by_id.update(fetch_documents(self.store, missing))
        relevance = cosine_relevance(self.store, vector, missing) if vector is not None else {}
        dense_rank = {i: r for r, i in enumerate(dense_ids, 1)}
        bm25_rank = {i: r for r, i in enumerate(bm25_ids, 1)}
        out = []
        for i, score in fused:
            if i not in by_id:
                continue  # deleted between the BM25 index and Chroma (rebuilt on the next query)
            extra: dict[str, Any] = {"score": round(score, 6), "dense_rank": dense_rank.get(i, 0),
                                     "bm25_rank": bm25_rank.get(i, 0)}
            if i in relevance:
                extra["relevance"] = relevance[i]
            out.append(with_scores(by_id[i], **extra))
        return out
