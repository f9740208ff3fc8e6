"""``HybridRetriever``: dense and BM25 results fused by a convex combination of scores or by RRF.

Dense retrieval finds paraphrases; BM25 finds rare exact terms (names, codes, numbers). Fusing the
two is more robust than either: on SciFact test nDCG@10 goes from 0.645 (dense) and 0.686 (BM25) to
0.719 with tuned reciprocal rank fusion and 0.727 with the convex combination (the default; see
``benchmarks/RESULTS_retrievers.md``). The query is embedded once; texts are fetched from Chroma only
for the chunks returned.
"""

from __future__ import annotations

from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from retrievers.base import check_query, cosine_relevance, fetch_documents, with_scores
from retrievers.bm25 import BM25Retriever
from retrievers.dense import DenseRetriever
from retrievers.fusion import convex_fusion, reciprocal_rank_fusion


class HybridRetriever(BaseRetriever):
    """Dense + BM25, fused by a weighted convex combination of min-max normalised scores, or RRF.

    Each document carries ``metadata["score"]`` (the fused score), ``metadata["relevance"]``
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
        fusion: ``convex`` (weighted sum of min-max normalised cosine and BM25 scores over the union
            of candidates) or ``rrf`` (weighted reciprocal rank fusion).
        dense_weight: weight of the dense ranking.
        bm25_weight: weight of the BM25 ranking.
        rrf_k: the RRF constant (``rrf`` only).
        where: a Chroma metadata filter applied to both rankings.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    dense: DenseRetriever
    bm25: BM25Retriever
    k: int = 4
    candidates: int = 50
    fusion: Literal["convex", "rrf"] = "convex"
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
        bm25_of_dense: dict[str, float] = {}
        if self.bm25_weight <= 0:
            bm25_ranked = []
        elif self.fusion == "convex":
            bm25_ranked, bm25_of_dense = self.bm25.ranked_and_scored(
                query, depth, where, [d.id for d in dense_docs])
        else:
            bm25_ranked = self.bm25.ranked_ids(query, depth, where)
        dense_ids = [d.id for d in dense_docs]
        bm25_ids = [i for i, _ in bm25_ranked]
        by_id = {d.id: d for d in dense_docs}
        relevance: dict[str, float] = {}
        if self.fusion == "convex":
            cosine = {d.id: d.metadata["relevance"] for d in dense_docs}
            bm25 = dict(bm25_ranked)
            if vector is not None:
                relevance = cosine_relevance(self.store, vector, [i for i in bm25 if i not in cosine])
                cosine.update(relevance)
            bm25.update(bm25_of_dense)  # same scoring pass: equal where both have an id
            fused = convex_fusion([cosine, bm25], [self.dense_weight, self.bm25_weight])[:k]
        else:
            fused = reciprocal_rank_fusion([dense_ids, bm25_ids],
                                           [self.dense_weight, self.bm25_weight], k=self.rrf_k)[:k]
        missing = [i for i, _ in fused if i not in by_id]
        by_id.update(fetch_documents(self.store, missing))
        if vector is not None and self.fusion == "rrf":
            relevance = cosine_relevance(self.store, vector, missing)
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
