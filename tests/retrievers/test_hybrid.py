"""Hybrid retrieval: both rankings contribute, weights steer, scores are filled in."""

from __future__ import annotations

from pathlib import Path

from appkit.retrieval import make_retriever
from retrievers.fusion import reciprocal_rank_fusion


def test_fused_order_matches_rrf_of_both_rankings(corpus):
    ctx = corpus.context()
    hybrid = make_retriever(ctx, "hybrid")
    query = "apples ripen ethylene"
    n = ctx.profile.retrievers.candidates
    dense = hybrid.dense.search_by_vector(hybrid.dense.embed_query(query), n)
    bm25 = hybrid.bm25.ranked_ids(query, n)
    cfg = ctx.profile.retrievers
    expected = reciprocal_rank_fusion([[d.id for d in dense], [i for i, _ in bm25]],
                                      [cfg.dense_weight, cfg.bm25_weight], k=cfg.rrf_k)
    docs = hybrid.invoke(query)
    assert [d.id for d in docs] == [i for i, _ in expected][: len(docs)]
    for d in docs:
        m = d.metadata
        assert m["score"] > 0 and "relevance" in m
        assert m["dense_rank"] or m["bm25_rank"]


def test_zero_weight_drops_a_ranking(corpus):
    dense_only = make_retriever(corpus.context(bm25_weight=0.0), "hybrid")
    dense = make_retriever(corpus.context(), "dense")
    q = "lunar module Eagle"
    assert [d.id for d in dense_only.invoke(q)] == [d.id for d in dense.invoke(q)]
    bm25_only = make_retriever(corpus.context(dense_weight=0.0), "hybrid")
    assert all(d.metadata["dense_rank"] == 0 for d in bm25_only.invoke(q))


def test_bm25_only_hits_get_a_cosine(corpus):
    docs = make_retriever(corpus.context(dense_weight=0.01), "hybrid").invoke("ethylene bananas", k=5)
    bm25_first = [d for d in docs if d.metadata["dense_rank"] == 0 or
                  d.metadata["bm25_rank"] < d.metadata["dense_rank"]]
    assert bm25_first and all(isinstance(d.metadata["relevance"], float) for d in bm25_first)
    assert Path(docs[0].metadata["source"]).name == "fruit.md"
