"""BM25 over the store: stemming, persistence, and staying in step with incremental ingestion."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from appkit.errors import AppkitError
from appkit.retrieval import make_retriever
from retrievers.bm25 import BM25Index, BM25Retriever, index_for


def sources(docs) -> list[str]:
    return [Path(d.metadata["source"]).name for d in docs]


def bm25(corpus, k: int = 3) -> BM25Retriever:
    return BM25Retriever(store=corpus.store, index=index_for(corpus.store, corpus.profile.data_dir),
                         k=k)


def test_finds_keyword_and_stems(corpus):
    docs = bm25(corpus).invoke("pressing cider")  # "press" in the text, "pressing" in the query
    assert sources(docs)[0] == "fruit.md"
    assert "cider" in docs[0].page_content
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0
    assert "relevance" not in docs[0].metadata  # BM25 knows no cosine


def test_stopwords_or_unknown_words_only_give_nothing(corpus):
    assert bm25(corpus).invoke("the and of") == []
    assert bm25(corpus).invoke("zzzqqq xylophone") == []


def test_index_is_saved_next_to_the_store_and_reloaded(corpus):
    index = index_for(corpus.store, corpus.profile.data_dir)
    index.ensure()
    folder = corpus.profile.data_dir / "bm25" / corpus.profile.store.collection
    assert (folder / "meta.json").exists() and (folder / "ids.json").exists()
    fresh = BM25Index(corpus.store, folder, corpus.ingestor.manifest)
    assert fresh.search("cider", 2)[0][0] == index.search("cider", 2)[0][0]
    assert fresh.rebuilds == 0  # loaded from disk, not rebuilt


def test_incremental_add_change_delete(corpus):
    retriever = bm25(corpus)
    index = retriever.index
    assert retriever.invoke("zeppelin") == []
    builds = index.rebuilds

    # add a file
    (corpus.folder / "airship.txt").write_text("The zeppelin was a rigid airship filled with "
                                               "hydrogen.", encoding="utf-8")
    assert corpus.ingest().added == 1
    assert sources(retriever.invoke("zeppelin")) == ["airship.txt"]
    assert index.rebuilds == builds + 1

    # no change: no rebuild
    corpus.ingest()
    retriever.invoke("zeppelin")
    assert index.rebuilds == builds + 1

    # change a file: the old words go, the new ones come
    fruit = corpus.folder / "fruit.md"
    fruit.write_text("# Orchard\n\nQuinces are hard, fragrant fruit best cooked into jelly.",
                     encoding="utf-8")
    os.utime(fruit, ns=(1, 1))
    assert corpus.ingest().updated == 1
    assert sources(retriever.invoke("quince jelly"))[0] == "fruit.md"
    assert "fruit.md" not in sources(retriever.invoke("cider normandy"))

    # delete a file
    (corpus.folder / "code.md").unlink()
    assert corpus.ingest().deleted == 1
    assert retriever.invoke("python generators itertools") == []
    ids = set(corpus.store.collection.get(include=[])["ids"])
    assert set(index._ids) == ids


def test_rebuilt_without_manifest_when_the_count_changes(corpus):
    index = BM25Index(corpus.store, corpus.profile.data_dir / "bm25-nomanifest", manifest=None)
    assert index.search("cider", 1)
    corpus.store.delete([i for i, _ in index.search("cider", 5)])
    assert index.search("cider", 5) == []


def test_filter_restricts_and_unknown_field_is_an_error(corpus):
    retriever = bm25(corpus, k=5)
    docs = retriever.invoke("fruit python moon", where={"file_type": "txt"})
    assert docs and set(sources(docs)) == {"space.txt"}
    with pytest.raises(AppkitError, match="colour"):
        retriever.invoke("fruit", where={"colour": "red"})


def test_empty_store(empty_corpus):
    assert make_retriever(empty_corpus.context(), "bm25").invoke("anything") == []


def test_memory_is_reported(corpus):
    assert index_for(corpus.store, corpus.profile.data_dir).memory_bytes() > 0


def test_scores_for_given_chunks(corpus):
    index = index_for(corpus.store, corpus.profile.data_dir)
    ranked = dict(index.search("pressing cider", 10))
    every = corpus.store.collection.get(include=[])["ids"]
    scores = index.scores_for("pressing cider", [*every, "no-such-chunk"])
    assert set(scores) == set(every)  # unknown ids are left out
    assert all(scores[i] == pytest.approx(s) for i, s in ranked.items())
    assert all(scores[i] == 0.0 for i in every if i not in ranked)
    assert set(index.scores_for("the and of", every).values()) == {0.0}
    assert index.scores_for("cider", []) == {}


def test_search_and_score_is_one_pass_of_search_and_scores_for(corpus):
    index = index_for(corpus.store, corpus.profile.data_dir)
    every = corpus.store.collection.get(include=[])["ids"]
    ranked, scores = index.search_and_score("pressing cider apples", 3, ids=every)
    assert ranked == index.search("pressing cider apples", 3)
    found, top = index._bm25.retrieve([index.query_terms("pressing cider apples")], k=3,
                                      show_progress=False)  # bm25s's own top k agrees
    assert [s for _, s in ranked] == pytest.approx([float(s) for s in top[0] if s > 0])
    assert scores == index.scores_for("pressing cider apples", every)
    allowed = set(every[: len(every) // 2])
    filtered, _ = index.search_and_score("pressing cider apples", 10, allowed)
    assert filtered == index.search("pressing cider apples", 10, allowed)
    assert {i for i, _ in filtered} <= allowed
