from __future__ import annotations

import math

from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from appkit.testing import FakeChatModel, HashingEmbeddings


def test_hashing_embeddings_are_normalised_and_deterministic() -> None:
    emb = HashingEmbeddings(dim=32)
    a, b = emb.embed_documents(["the budget for Q3", "the budget for Q3"])
    assert a == b and len(a) == 32
    assert math.isclose(sum(v * v for v in a), 1.0)
    assert emb.calls == 2
    assert emb.embed_query("") == [1.0] + [0.0] * 31


def test_hashing_embeddings_put_shared_words_close() -> None:
    emb = HashingEmbeddings()
    q = emb.embed_query("hotel price per night")
    near, far = emb.embed_documents(["the hotel price per night is 135", "kestrel ships in november"])
    dot = lambda x, y: sum(i * j for i, j in zip(x, y))  # noqa: E731
    assert dot(q, near) > dot(q, far)


def test_fake_chat_model_replays_and_records() -> None:
    llm = FakeChatModel(replies=["one", "two words"], default="done")
    assert llm.invoke("a").content == "one"
    assert [c.content for c in llm.stream("b") if c.content] == ["two ", "words"]
    assert llm.invoke("c").content == "done"
    assert [m[0].content for m in llm.calls] == ["a", "b", "c"]
    assert llm.invoke("d").usage_metadata["output_tokens"] == 1


class TestHashingEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[HashingEmbeddings]:
        return HashingEmbeddings


class TestHashingEmbeddingsIntegration(EmbeddingsIntegrationTests):
    @property
    def embeddings_class(self) -> type[HashingEmbeddings]:
        return HashingEmbeddings
