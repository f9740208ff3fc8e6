"""Hybrid retrieval: both rankings contribute, weights steer, scores are filled in, both fusions."""

from __future__ import annotations

from pathlib import Path

from appkit.retrieval import make_retriever
from retrievers.fusion import convex_fusion, reciprocal_rank_fusion


def test_fused_order_matches_rrf_of_both_rankings(corpus):
    ctx = corpus.context(fusion="rrf")
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


def test_convex_is_the_default_and_uses_both_scores_for_every_candidate(corpus):
    ctx = corpus.context()
    cfg = ctx.profile.retrievers
    assert cfg.fusion == "convex"
    hybrid = make_retriever(ctx, "hybrid")
    query = "apples ripen ethylene"
    vector = hybrid.dense.embed_query(query)
    dense = {d.id: d.metadata["relevance"]
             for d in hybrid.dense.search_by_vector(vector, cfg.candidates)}
    bm25 = dict(hybrid.bm25.ranked_ids(query, cfg.candidates))
    union = list(dict.fromkeys([*dense, *bm25]))
    # Every candidate gets its real cosine and its real BM25 score (0 when it shares no term).
    cosine = {i: float(v @ _unit(vector)) for i, v in _vectors(corpus.store, union).items()}
    bm25_all = hybrid.bm25.scores_for(query, union)
    assert set(bm25_all) == set(union) and all(bm25_all[i] == bm25[i] for i in bm25)
    expected = convex_fusion([cosine, bm25_all], [cfg.dense_weight, cfg.bm25_weight])
    docs = hybrid.invoke(query)
    assert [d.id for d in docs] == [i for i, _ in expected][: len(docs)]
    assert [d.metadata["score"] for d in docs] == sorted((d.metadata["score"] for d in docs),
                                                         reverse=True)
    assert all(isinstance(d.metadata["relevance"], float) for d in docs)


def test_convex_with_one_side_weighted_zero(corpus):
    q = "lunar module Eagle"
    dense = make_retriever(corpus.context(), "dense")
    dense_only = make_retriever(corpus.context(bm25_weight=0.0), "hybrid")
    assert [d.id for d in dense_only.invoke(q)] == [d.id for d in dense.invoke(q)]
    bm25_only = make_retriever(corpus.context(dense_weight=0.0), "hybrid")
    assert all(d.metadata["dense_rank"] == 0 for d in bm25_only.invoke(q))


def _vectors(store, ids):
    import numpy as np

    res = store.collection.get(ids=ids, include=["embeddings"])
    return {i: np.asarray(v, dtype=np.float32) / np.linalg.norm(v)
            for i, v in zip(res["ids"], res["embeddings"])}


def _unit(vector):
    import numpy as np

    v = np.asarray(vector, dtype=np.float32)
    return v / np.linalg.norm(v)
