"""The langchain-tests vector store suite against ``ChromaStore.vectorstore`` (our client, our
collection settings), each test on an empty collection of its own."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import VectorStoreIntegrationTests

from appkit.config import StoreConfig
from appkit.store.chroma import ChromaStore

_names = itertools.count()


@pytest.mark.integration
class TestChromaStoreVectorStore(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VectorStore]:
        data = tmp_path_factory.getbasetemp() / "chroma-standard"
        store = ChromaStore(StoreConfig(collection=f"standard-{next(_names)}"), data,
                            self.get_embeddings())
        try:
            yield store.vectorstore
        finally:
            store.drop()
