from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from appkit.config import StoreConfig
from appkit.errors import EmbedderMismatchError
from appkit.store.chroma import ChromaStore, chroma_client, embedder_identity
from appkit.testing import HashingEmbeddings

TEXTS = {
    "budget": "The Q3 marketing budget is capped at 48,000 euros.",
    "hotel": "Hotels are reimbursed up to 135 euros per night.",
    "ship": "Kestrel-2 ships to customers on 14 November.",
}


@pytest.fixture
def store(tmp_path: Path, embeddings: HashingEmbeddings) -> ChromaStore:
    return ChromaStore(StoreConfig(), tmp_path / "data", embeddings)


def fill(store: ChromaStore) -> None:
    ids = list(TEXTS)
    texts = list(TEXTS.values())
    metas = [{"source": f"/docs/{i}.txt", "kind": "policy" if i == "hotel" else "note"} for i in ids]
    store.upsert(ids, texts, metas, store.embeddings.embed_documents(texts))


def test_a_new_store_is_empty(store: ChromaStore, tmp_path: Path) -> None:
    assert store.count() == 0
    assert store.search("anything", k=3) == []
    assert (tmp_path / "data" / "chroma").is_dir()


def test_upsert_get_and_delete(store: ChromaStore) -> None:
    fill(store)
    assert store.count() == 3
    [doc] = store.get(ids=["hotel"])
    assert doc == Document(id="hotel", page_content=TEXTS["hotel"],
                           metadata={"source": "/docs/hotel.txt", "kind": "policy"})
    assert [d.id for d in store.get(where={"kind": "note"})] == ["budget", "ship"]
    fill(store)  # upsert again: no duplicates
    assert store.count() == 3
    store.delete(["budget", "ship"])
    assert [d.id for d in store.get()] == ["hotel"]


def test_upsert_writes_in_batches_the_server_accepts(store: ChromaStore,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(type(store.client), "get_max_batch_size", lambda self: 2)
    original = type(store.collection).upsert

    def upsert(self, **kwargs):
        calls.append(len(kwargs["ids"]))
        return original(self, **kwargs)

    monkeypatch.setattr(type(store.collection), "upsert", upsert)
    fill(store)
    assert calls == [2, 1] and store.count() == 3


def test_search_ranks_by_cosine_relevance(store: ChromaStore) -> None:
    fill(store)
    hits = store.search("Hotels are reimbursed up to 135 euros per night.", k=3)
    assert [h.id for h in hits][0] == "hotel"
    assert hits[0].metadata["relevance"] == pytest.approx(1.0, abs=1e-4)
    relevances = [h.metadata["relevance"] for h in hits]
    assert relevances == sorted(relevances, reverse=True)
    assert all(-1.0 <= r <= 1.0 for r in relevances)
    assert {h.id for h in store.search("euros", k=3, where={"kind": "note"})} == {"budget", "ship"}


def test_the_collection_is_stamped_with_its_embedder(store: ChromaStore, tmp_path: Path) -> None:
    fill(store)
    assert store.collection.metadata["appkit:embedder"] == "hashing-256"
    other = ChromaStore(StoreConfig(), tmp_path / "data", HashingEmbeddings(identity="minilm"))
    with pytest.raises(EmbedderMismatchError) as err:
        other.count()
    assert "'hashing-256'" in str(err.value) and "'minilm'" in str(err.value)
    assert "appkit ingest --reembed" in str(err.value)


def test_drop_empties_the_collection_for_a_new_embedder(store: ChromaStore, tmp_path: Path) -> None:
    fill(store)
    store.drop()
    store.drop()  # dropping an absent collection is fine
    other = ChromaStore(StoreConfig(), tmp_path / "data", HashingEmbeddings(identity="minilm"))
    assert other.count() == 0
    assert other.collection.metadata["appkit:embedder"] == "minilm"


def test_collections_are_separate(tmp_path: Path, embeddings: HashingEmbeddings) -> None:
    team = ChromaStore(StoreConfig(collection="team"), tmp_path, embeddings)
    mine = ChromaStore(StoreConfig(collection="mine"), tmp_path, embeddings)
    fill(team)
    assert (team.count(), mine.count()) == (3, 0)
    assert team.client is mine.client, "one Chroma client per folder and process"


def test_one_client_per_location(tmp_path: Path) -> None:
    assert chroma_client(StoreConfig(), tmp_path / "a") is chroma_client(StoreConfig(), tmp_path / "a")
    assert chroma_client(StoreConfig(), tmp_path / "a") is not chroma_client(StoreConfig(),
                                                                             tmp_path / "b")


def test_vectorstore_is_the_same_collection_for_langchain(store: ChromaStore) -> None:
    from langchain_chroma import Chroma

    fill(store)
    vs = store.vectorstore
    assert isinstance(vs, Chroma)
    assert vs.similarity_search(TEXTS["ship"], k=1)[0].id == "ship"
    vs.add_texts(["Added through LangChain."], ids=["lc"])
    assert store.count() == 4


def test_embedder_identity() -> None:
    assert embedder_identity(HashingEmbeddings(identity="x")) == "x"

    class Plain(Embeddings):
        def embed_documents(self, texts: list[str]) -> list[list[float]]:
            return [[1.0] for _ in texts]

        def embed_query(self, text: str) -> list[float]:
            return [1.0]

    assert embedder_identity(Plain()) == "Plain"
