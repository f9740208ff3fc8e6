"""Training data and the catalogue: pairs files, qrels pairs, synthetic pairs, registration.

The training runs themselves use the real MiniLM and are in ``test_integration.py`` (slow).
"""

from __future__ import annotations

import json

import pytest

from appkit.errors import AppkitError
from appkit.models.catalogue import get_spec, list_models
from appkit.testing import FakeChatModel
from retrievers.train import (
    pairs_from_qrels,
    read_pairs,
    read_qrels,
    register_trained,
    synthetic_pairs,
    write_pairs,
)


@pytest.mark.parametrize("line,message", [
    ("not json", "line 1: not JSON"),
    ('["q", "p"]', "line 1: expected an object"),
    ('{"query": "", "positive": "p"}', "line 1: 'query' must be non-empty"),
    ('{"query": "q", "positive": "p", "negatives": "n"}', "'negatives' must be a list"),
])
def test_read_pairs_names_the_line(tmp_path, line, message):
    path = tmp_path / "pairs.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(AppkitError, match=message):
        read_pairs(path)


def test_read_pairs_round_trip_and_empty(tmp_path):
    rows = [{"query": "q", "positive": "p", "negatives": ["n"]},
            {"query": "q2", "positive": "p2", "negatives": []}]
    assert read_pairs(write_pairs(rows, tmp_path / "p.jsonl")) == rows
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(AppkitError, match="holds no pairs"):
        read_pairs(tmp_path / "empty.jsonl")
    with pytest.raises(AppkitError, match="cannot read"):
        read_pairs(tmp_path / "missing.jsonl")


def test_pairs_from_qrels_mines_unjudged_negatives(beir):
    pairs = pairs_from_qrels(beir / "qrels.tsv", beir / "queries.jsonl", beir / "corpus.jsonl",
                             negatives=2)
    assert len(pairs) == 3
    q2 = [p for p in pairs if p["query"] == "aspirin colon cancer"]
    judged = {"Aspirin Aspirin reduces the risk of colon cancer.",
              "Cancer screening Colonoscopy screening finds cancer."}
    assert {p["positive"] for p in q2} == judged
    assert all(not set(p["negatives"]) & judged for p in q2)
    assert read_qrels(beir / "qrels.tsv") == {"q1": {"d1": 1}, "q2": {"d2": 1, "d5": 1}}


def test_pairs_from_qrels_unknown_query(beir):
    with pytest.raises(AppkitError, match="query id q9"):
        pairs_from_qrels({"q9": {"d1": 1}}, beir / "queries.jsonl", beir / "corpus.jsonl")


def test_synthetic_pairs_from_the_store(corpus):
    llm = FakeChatModel(replies=["When did Apollo 11 land on the Moon?", "?"],
                        default="Which fruit releases ethylene gas?")
    pairs = synthetic_pairs(corpus.store, llm, 4, negatives=2)
    assert len(pairs) == 3  # the "?" reply is too short to keep
    assert pairs[0]["query"] == "When did Apollo 11 land on the Moon?"
    assert all(p["positive"] not in p["negatives"] and len(p["negatives"]) == 2 for p in pairs)
    assert "passage" in llm.calls[0][0].text.lower()


def test_synthetic_pairs_need_chunks(empty_corpus):
    with pytest.raises(AppkitError, match="ingest"):
        synthetic_pairs(empty_corpus.store, FakeChatModel(), 3)


def test_trained_models_are_registered_with_lineage(tmp_path, monkeypatch):
    monkeypatch.setenv("APPKIT_CACHE", str(tmp_path / "cache"))
    model = tmp_path / "model"
    model.mkdir()
    pairs = write_pairs([{"query": "q", "positive": "p"}], tmp_path / "pairs.jsonl")
    register_trained("test-reranker", "reranker", model, base="all-minilm-l6-v2",
                     pairs_file=pairs, facts={"epochs": 1}, description="test")
    spec = get_spec("test-reranker")
    assert spec.role == "reranker" and spec.local_path == str(model.resolve())
    assert spec.lineage["base"] == "all-minilm-l6-v2" and len(spec.lineage["pairs_sha256"]) == 64
    saved = json.loads((tmp_path / "cache" / "models" / "registry.json").read_text())
    assert saved["test-reranker"]["lineage"]["epochs"] == 1
    assert "test-reranker" in {s.name for s in list_models()}
