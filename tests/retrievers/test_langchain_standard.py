"""LangChain's standard retriever suite (``langchain_tests``) against this layer's retrievers.

The suite constructs a retriever from ``retriever_constructor`` + params, so each class gets a
store of its own with the tiny corpus ingested (hashing embedder, no model files).
"""

from __future__ import annotations

import tempfile
from functools import cache
from pathlib import Path

from langchain_tests.integration_tests import RetrieversIntegrationTests

from retrievers.bm25 import BM25Retriever, index_for
from retrievers.context import ContextExpansionRetriever
from retrievers.dense import DenseRetriever
from retrievers.hybrid import HybridRetriever
from retrievers.query_transform import QueryTransformRetriever
from retrievers.rerank import LLMReranker, RerankRetriever


@cache
def _corpus():
    from tests.retrievers.conftest import Corpus

    c = Corpus(Path(tempfile.mkdtemp(prefix="appkit-lc-")))
    c.ingest()
    return c


def _dense():
    return DenseRetriever(store=_corpus().store, k=20)


def _bm25():
    c = _corpus()
    return BM25Retriever(store=c.store, index=index_for(c.store, c.profile.data_dir), k=20)


def _hybrid():
    return HybridRetriever(dense=_dense(), bm25=_bm25(), candidates=20)


class TestDenseStandard(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self):
        return DenseRetriever

    @property
    def retriever_constructor_params(self):
        return {"store": _corpus().store}

    @property
    def retriever_query_example(self):
        return "apples and fruit in the Moon orchard"


class TestBM25Standard(TestDenseStandard):
    @property
    def retriever_constructor(self):
        return BM25Retriever

    @property
    def retriever_constructor_params(self):
        c = _corpus()
        return {"store": c.store, "index": index_for(c.store, c.profile.data_dir)}


class TestHybridStandard(TestDenseStandard):
    @property
    def retriever_constructor(self):
        return HybridRetriever

    @property
    def retriever_constructor_params(self):
        return {"dense": _dense(), "bm25": _bm25(), "candidates": 20}


class TestRerankStandard(TestDenseStandard):
    @property
    def retriever_constructor(self):
        return RerankRetriever

    @property
    def retriever_constructor_params(self):
        from appkit.testing import FakeChatModel

        return {"base": _hybrid(), "candidates": 10,
                "reranker": LLMReranker(lambda: FakeChatModel(replies=[]))}


class TestQueryTransformStandard(TestDenseStandard):
    @property
    def retriever_constructor(self):
        return QueryTransformRetriever

    @property
    def retriever_constructor_params(self):
        from appkit.testing import FakeChatModel

        return {"base": _hybrid(), "llm": lambda: FakeChatModel(default="fruit orchard\nMoon")}


class TestContextStandard(TestDenseStandard):
    @property
    def retriever_constructor(self):
        return ContextExpansionRetriever

    @property
    def retriever_constructor_params(self):
        return {"base": _hybrid(), "store": _corpus().store, "window": 1}

