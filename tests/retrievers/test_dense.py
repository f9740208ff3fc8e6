"""Dense retrieval with metadata filters (source, file type, date) and MMR."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from appkit.errors import AppkitError
from retrievers.dense import DenseRetriever
from retrievers.filters import build_where, where_fields


def names(docs) -> set[str]:
    return {Path(d.metadata["source"]).name for d in docs}


def test_scores_are_cosine(corpus):
    docs = DenseRetriever(store=corpus.store, k=3).invoke("apples cider orchards Normandy")
    assert Path(docs[0].metadata["source"]).name == "fruit.md"
    rel = [d.metadata["relevance"] for d in docs]
    assert rel == sorted(rel, reverse=True) and all(-1 <= r <= 1 for r in rel)
    assert docs[0].metadata["score"] == docs[0].metadata["relevance"]


@pytest.mark.parametrize("kwargs,expected", [
    ({"file_type": "md"}, {"fruit.md", "code.md"}),
    ({"file_type": [".TXT"]}, {"space.txt"}),
])
def test_file_type_filter(corpus, kwargs, expected):
    docs = DenseRetriever(store=corpus.store, k=20, where=build_where(**kwargs)).invoke("fruit moon")
    assert names(docs) == expected


def test_source_filter(corpus):
    src = str(corpus.folder.resolve() / "code.md")
    docs = DenseRetriever(store=corpus.store, k=20).invoke("moon", where=build_where(source=src))
    assert names(docs) == {"code.md"}


def test_date_filter_uses_the_manifest(corpus):
    manifest = corpus.ingestor.manifest
    now = datetime.now(timezone.utc)
    recent = build_where(modified_after=now - timedelta(days=1), manifest=manifest)
    assert len(DenseRetriever(store=corpus.store, k=50, where=recent).invoke("fruit")) > 3
    future = build_where(modified_after=(now + timedelta(days=1)).date().isoformat(),
                         manifest=manifest)
    assert DenseRetriever(store=corpus.store, k=50, where=future).invoke("fruit") == []
    with pytest.raises(AppkitError, match="date"):
        build_where(modified_before="last tuesday", manifest=manifest)
    with pytest.raises(AppkitError, match="manifest"):
        build_where(modified_after="2024-01-01")


def test_unknown_field_is_a_clear_error(corpus):
    r = DenseRetriever(store=corpus.store, k=3, where={"author": "me"})
    with pytest.raises(AppkitError, match="'author', which no chunk has; filter on one of: .*source"):
        r.invoke("fruit")


def test_malformed_filter_is_a_clear_error(corpus):
    with pytest.raises(AppkitError, match="filter"):
        DenseRetriever(store=corpus.store, k=3, where={"source": {"$nope": 1}}).invoke("fruit")
    with pytest.raises(AppkitError, match="filter"):
        DenseRetriever(store=corpus.store, k=3).invoke("fruit", where=["source"])


def test_where_fields_walks_operators():
    where = {"$and": [{"source": "a"}, {"$or": [{"page": {"$gt": 1}}, {"heading": "x"}]}]}
    assert where_fields(where) == {"source", "page", "heading"}


def test_mmr_prefers_diverse_chunks(empty_corpus):
    folder = empty_corpus.folder
    for i in range(4):  # near-duplicates
        (folder / f"dup{i}.txt").write_text("Solar panels convert sunlight into electricity.")
    (folder / "wind.txt").write_text("Solar farms and wind turbines convert wind into electricity.")
    empty_corpus.ingest()
    query = "solar panels sunlight electricity"
    plain = DenseRetriever(store=empty_corpus.store, k=2).invoke(query)
    diverse = DenseRetriever(store=empty_corpus.store, k=2, mmr=True, fetch_k=10).invoke(query)
    dups = {f"dup{i}.txt" for i in range(4)}
    assert names(plain) <= dups
    assert len(names(diverse) & dups) == 1  # one of the copies, then something else
