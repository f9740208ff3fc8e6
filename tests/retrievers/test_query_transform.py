"""Query transformation: multi-query expansion and follow-up condensation with a fake chat model."""

from __future__ import annotations

from pathlib import Path

from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

from appkit.retrieval import make_retriever
from appkit.testing import FakeChatModel
from retrievers.query_transform import QueryTransformRetriever, parse_queries


class Recorder(BaseRetriever):
    """Returns one document named after each query it is asked."""

    asked: list = []

    def _get_relevant_documents(self, query, *, run_manager):
        self.asked.append(query)
        return [Document(page_content=query, id=query, metadata={"relevance": 0.5})]


def test_parse_queries_strips_marks_and_repeats():
    text = "1. apple storage\n- how to keep apples\n\nApple storage?\n\"cold cellar fruit\""
    assert parse_queries(text, 5, "apple storage") == ["how to keep apples", "Apple storage?",
                                                       "cold cellar fruit"]
    assert parse_queries(text, 1, "x") == ["apple storage"]


def test_expansion_runs_each_query_and_fuses():
    llm = FakeChatModel(replies=["keeping apples cold\nfruit cellar"])
    base = Recorder(asked=[])
    r = QueryTransformRetriever(base=base, llm=lambda: llm, k=5, n_queries=2)
    docs = r.invoke("how to store apples")
    assert base.asked == ["how to store apples", "keeping apples cold", "fruit cellar"]
    assert docs[0].id == "how to store apples"  # the original query weighs most
    assert {d.metadata["queries"] for d in docs} == {1}


def test_condenses_follow_ups_with_history():
    llm = FakeChatModel(replies=["What are the side effects of metformin?"])
    base = Recorder(asked=[])
    r = QueryTransformRetriever(base=base, llm=lambda: llm, expand=False)
    docs = r.invoke_with_history("and its side effects?", [("What is metformin?", "A drug.")])
    assert base.asked == ["What are the side effects of metformin?"]
    assert docs[0].metadata["standalone_query"] == "What are the side effects of metformin?"
    assert r.history == []  # the retriever itself is unchanged


class Broken(FakeChatModel):
    def _generate(self, *a, **k):
        raise ValueError("Requested tokens exceed context window")


def test_a_failing_model_leaves_the_query_alone():
    base = Recorder(asked=[])
    r = QueryTransformRetriever(base=base, llm=lambda: Broken(), n_queries=3)
    assert [d.id for d in r.invoke("x " * 5000)] == ["x " * 5000]
    assert r.invoke_with_history("and then?", [("q", "a")])[0].id == "and then?"


def test_switch_in_the_profile(corpus):
    corpus.llm.replies = ["Saturn rocket launch Florida"]
    r = make_retriever(corpus.context(query_expansion=True, expansion_queries=1), "hybrid")
    assert isinstance(r, QueryTransformRetriever)
    docs = r.invoke("Apollo")
    assert len(corpus.llm.calls) == 1
    assert Path(docs[0].metadata["source"]).name == "space.txt"
    assert not isinstance(make_retriever(corpus.context(), "hybrid"), QueryTransformRetriever)
