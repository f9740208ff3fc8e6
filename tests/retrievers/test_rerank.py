"""Reranking: a scorer re-orders first-stage candidates; the LLM reranker parses a ranking."""

from __future__ import annotations

import pytest

from appkit.errors import ModelNotAvailableError
from appkit.retrieval import make_retriever
from appkit.testing import FakeChatModel
from retrievers.rerank import CrossEncoderReranker, LLMReranker, RerankRetriever


class LengthScorer:
    """Longest text first: an order the first stage never produces on its own."""

    def __init__(self):
        self.calls = 0

    def score(self, query, texts):
        self.calls += 1
        return [float(len(t)) for t in texts]


def test_reorders_candidates(corpus):
    base = make_retriever(corpus.context(), "hybrid")
    base.k = 6
    reranked = RerankRetriever(base=base, reranker=LengthScorer(), candidates=6, k=3)
    docs = reranked.invoke("fruit moon python")
    lengths = [len(d.page_content) for d in docs]
    assert lengths == sorted(lengths, reverse=True)
    first = base.invoke("fruit moon python")
    assert {d.id for d in docs} <= {d.id for d in first}
    for d in docs:
        assert d.metadata["score"] == float(len(d.page_content))
        assert 1 <= d.metadata["first_stage_rank"] <= 6
        assert "relevance" in d.metadata


def test_llm_reranker_follows_the_model_and_keeps_the_rest():
    llm = FakeChatModel(replies=["3, 1, 3, 9"])
    scores = LLMReranker(lambda: llm).score("q", ["a", "b", "c", "d"])
    order = sorted(range(4), key=lambda i: -scores[i])
    assert order == [2, 0, 1, 3]
    assert "[4] d" in llm.calls[0][-1].text


def test_llm_reranker_survives_a_useless_reply():
    scores = LLMReranker(lambda: FakeChatModel(replies=["I cannot rank these."])).score(
        "q", ["a", "b"])
    assert scores[0] > scores[1]


def test_llm_reranker_in_the_pipeline(corpus):
    corpus.llm.replies = ["2, 1"]
    docs = make_retriever(corpus.context(reranker="llm"), "rerank").invoke("cider apples")
    assert docs and corpus.llm.calls
    assert docs[0].metadata["first_stage_rank"] == 2


def test_missing_cross_encoder_says_how_to_train_one(corpus):
    r = make_retriever(corpus.context(reranker="cross-encoder", rerank_model=""), "rerank")
    with pytest.raises(ModelNotAvailableError, match="appkit retrievers train"):
        r.invoke("cider")
    with pytest.raises(ModelNotAvailableError, match="unknown model"):
        CrossEncoderReranker("no-such-reranker").score("q", ["a"])
    assert CrossEncoderReranker("no-such-reranker").score("q", []) == []


def test_blending_with_the_first_stage(corpus):
    base = make_retriever(corpus.context(), "hybrid")
    base.k = 6
    first = [d.id for d in base.invoke("fruit moon python")]
    pure = RerankRetriever(base=base, reranker=LengthScorer(), candidates=6, k=6)
    heavy = RerankRetriever(base=base, reranker=LengthScorer(), candidates=6, k=6,
                            first_stage_weight=100.0)
    assert [d.id for d in heavy.invoke("fruit moon python")] == first
    blended = pure.model_copy(update={"first_stage_weight": 1.0}).invoke("fruit moon python")
    assert all("rerank_score" in d.metadata for d in blended)
    scores = [d.metadata["score"] for d in blended]
    assert scores == sorted(scores, reverse=True)
