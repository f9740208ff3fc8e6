"""Real-model tests: the packaged MiniLM embedder, a cross-encoder from MiniLM, CPU training.

Slow (minutes on two cores): run with ``pytest -m slow``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from appkit.config import Profile
from appkit.ingest.pipeline import Ingestor
from appkit.retrieval import RetrieverContext, make_retriever
from appkit.store.chroma import ChromaStore

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    from appkit.models import make_embeddings
    from tests.retrievers.conftest import DOCS, make_profile

    root = tmp_path_factory.mktemp("real")
    folder = root / "docs"
    folder.mkdir()
    for name, text in DOCS.items():
        (folder / name).write_text(text, encoding="utf-8")
    profile = make_profile(root / "data")
    embeddings = make_embeddings(Profile())
    store = ChromaStore(profile.store, profile.data_dir, embeddings)
    Ingestor(profile, embeddings=embeddings, store=store, progress=False).run([folder])
    return profile, store


def ctx(real, **retrievers):
    profile, store = real
    profile = dataclasses.replace(profile, retrievers=dataclasses.replace(profile.retrievers,
                                                                          **retrievers))
    return RetrieverContext(profile, store, None)


@pytest.mark.parametrize("name", ["dense", "mmr", "bm25", "hybrid"])
def test_paraphrase_or_keyword_finds_the_right_file(real, name):
    query = ("When did astronauts first walk on the Moon?" if name != "bm25"
             else "Apollo lunar module Eagle")
    docs = make_retriever(ctx(real), name).invoke(query)
    assert Path(docs[0].metadata["source"]).name == "space.txt"


def test_query_longer_than_the_model_window(real):
    query = "Which fruit should be kept away from bananas? " + "filler words " * 600  # > 256 tokens
    for name in ("dense", "hybrid"):
        assert make_retriever(ctx(real), name).invoke(query)


def test_cross_encoder_from_minilm_scores_and_truncates(real):
    from retrievers.rerank import CrossEncoderReranker

    ce = CrossEncoderReranker("all-minilm-l6-v2", max_length=128)  # untrained head: shape only
    scores = ce.score("moon landing " * 300, ["Apollo 11 landed on the Moon.", "Cider " * 500])
    assert len(scores) == 2 and all(isinstance(s, float) for s in scores)


def test_train_register_and_use(real, tmp_path, monkeypatch):
    monkeypatch.setenv("APPKIT_CACHE", str(tmp_path / "cache"))
    from tests.retrievers.conftest import DOCS
    from retrievers.train import register_trained, train_encoder, train_reranker, tuned_dir

    texts = list(DOCS.values())
    asked = [("first Moon landing", 0), ("how to store apples", 1), ("lazy python sequences", 2),
             ("Saturn V launch site", 0), ("cider from Normandy", 1), ("static type checking", 2)]
    pairs = [{"query": q, "positive": texts[i], "negatives": [texts[(i + 1) % 3]]}
             for q, i in asked]
    facts = train_encoder(pairs, tuned_dir("tiny-encoder"), epochs=1, batch_size=4)
    assert facts["pairs"] == 6 and (tuned_dir("tiny-encoder") / "config.json").exists()
    facts = train_reranker(pairs, tuned_dir("tiny-reranker"), epochs=1, batch_size=4, negatives=2)
    assert facts["positives"] == 6
    register_trained("tiny-reranker", "reranker", tuned_dir("tiny-reranker"),
                     base="all-minilm-l6-v2", pairs_file=None, facts=facts, description="t")
    docs = make_retriever(ctx(real, reranker="cross-encoder", rerank_model="tiny-reranker"),
                          "rerank").invoke("When did astronauts walk on the Moon?")
    assert docs and all("first_stage_rank" in d.metadata for d in docs)
