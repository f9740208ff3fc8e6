from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from appkit import retrieval
from appkit.config import Profile, save_profile
from appkit.errors import AppkitError, ConfigError
from appkit.retrieval import (
    ChromaDenseRetriever,
    RetrieverContext,
    make_retriever,
    register_retriever,
    retriever_names,
)
from appkit.store.chroma import ChromaStore
from appkit.testing import HashingEmbeddings


@pytest.fixture(autouse=True)
def isolated_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the core's retrievers: entry points of installed plugins are not loaded."""
    monkeypatch.setattr(retrieval, "_factories", {"dense": retrieval._factories["dense"]})
    monkeypatch.setattr(retrieval, "_entry_points_loaded", False)
    monkeypatch.setattr(retrieval, "entry_points", lambda group: [])


@pytest.fixture
def store(profile: Profile, embeddings: HashingEmbeddings) -> ChromaStore:
    store = ChromaStore(profile.store, profile.data_dir, embeddings)
    texts = ["The Q3 budget is 48k.", "Hotels cost 135 per night.", "Support opens at eight."]
    store.upsert(["a", "b", "c"], texts, [{"source": f"/d/{i}.txt"} for i in "abc"],
                 embeddings.embed_documents(texts))
    return store


def test_dense_is_the_default(profile: Profile, store: ChromaStore) -> None:
    # The core registers only dense; the profile's default, hybrid, comes from the retrievers layer.
    assert retriever_names() == ["dense"] and Profile().retrieval.retriever == "hybrid"
    retriever = make_retriever(RetrieverContext(profile, store), "dense")
    assert isinstance(retriever, ChromaDenseRetriever) and retriever.k == profile.retrieval.k


def test_dense_returns_relevance_scores(profile: Profile, store: ChromaStore) -> None:
    docs = ChromaDenseRetriever(store=store, k=2).invoke("What is the Q3 budget?")
    assert docs[0].id == "a" and len(docs) == 2
    assert docs[0].metadata["relevance"] > docs[1].metadata["relevance"]


def test_dense_filters_by_metadata(store: ChromaStore) -> None:
    docs = ChromaDenseRetriever(store=store, k=3, where={"source": "/d/c.txt"}).invoke("budget")
    assert [d.id for d in docs] == ["c"]


def test_an_empty_query_is_refused(store: ChromaStore) -> None:
    with pytest.raises(AppkitError, match="empty"):
        ChromaDenseRetriever(store=store).invoke("   ")


def test_unknown_retriever_names_the_key_and_the_known_ones(tmp_path: Path,
                                                            store: ChromaStore) -> None:
    path = save_profile(Profile(), tmp_path / "appkit.toml")
    from appkit.config import load_profile

    with pytest.raises(ConfigError) as err:
        make_retriever(RetrieverContext(load_profile(path), store), "bm42")
    message = str(err.value)
    assert f"file {path}" in message and "key 'retrieval.retriever'" in message
    assert "unknown retriever 'bm42'" in message and "dense" in message


def test_registered_retrievers_are_used(profile: Profile, store: ChromaStore) -> None:
    seen = []

    def factory(ctx: RetrieverContext):
        seen.append(ctx)
        return ChromaDenseRetriever(store=ctx.store, k=1)

    register_retriever("one", factory)
    retriever = make_retriever(RetrieverContext(profile, store), "one")
    assert retriever.k == 1 and seen[0].profile is profile
    assert retriever_names() == ["dense", "one"]


def test_plugins_register_through_entry_points(profile: Profile, store: ChromaStore,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    ep = EntryPoint(name="plugin", value="tests.test_retrieval:plugin_factory",
                    group=retrieval.ENTRY_POINT_GROUP)
    monkeypatch.setattr(retrieval, "entry_points",
                        lambda group: [ep] if group == retrieval.ENTRY_POINT_GROUP else [])
    assert make_retriever(RetrieverContext(profile, store), "plugin").k == 2
    assert "plugin" in retriever_names()


def plugin_factory(ctx: RetrieverContext) -> ChromaDenseRetriever:
    return ChromaDenseRetriever(store=ctx.store, k=2)
