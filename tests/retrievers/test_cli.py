"""``appkit search`` and ``appkit retrievers``: ranked chunks with scores, pairs, listing."""

from __future__ import annotations

import json

import pytest

from appkit.app import App
from appkit.cli import main
from appkit.config import save_profile


@pytest.fixture
def profile_file(corpus, monkeypatch):
    path = save_profile(corpus.profile, corpus.folder.parent / "appkit.toml")
    # The profile's store path is absolute, so the CLI finds the corpus ingested by the fixture;
    # the hashing embedder replaces MiniLM.
    monkeypatch.setattr("retrievers.cli._app", lambda args: App.from_profile_file(
        args.profile, embeddings=corpus.embeddings, chat_model=corpus.llm))
    return str(path)


def test_search_prints_ranked_chunks_with_scores(profile_file, capsys):
    assert main(["search", "Apollo", "Moon", "--retriever", "hybrid", "--k", "2",
                 "-p", profile_file]) == 0
    out = capsys.readouterr().out
    assert out.startswith("2 chunks (hybrid)")
    assert "  1. score " in out and "  2. score " in out and "space.txt" in out
    assert "cosine" in out


def test_search_json_and_filters(profile_file, capsys):
    assert main(["search", "fruit moon python", "-r", "bm25", "--type", "md", "--json",
                 "-p", profile_file]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows and [r["rank"] for r in rows] == list(range(1, len(rows) + 1))
    assert all(r["metadata"]["file_type"] == "md" for r in rows)
    assert all(isinstance(r["score"], float) for r in rows)


@pytest.mark.parametrize("argv,message", [
    (["search", " ", "-r", "hybrid"], "the query is empty"),
    (["search", "x", "-r", "hybrid", "--where", '{"colour": "red"}'], "'colour', which no chunk"),
    (["search", "x", "-r", "hybrid", "--where", "{oops"], "--where is not JSON"),
    (["search", "x", "-r", "nope"], "unknown retriever 'nope'"),
    (["search", "x", "--k", "0"], "--k must be at least 1"),
])
def test_search_errors_are_one_line(profile_file, capsys, argv, message):
    assert main([*argv, "-p", profile_file]) == 2
    assert message in capsys.readouterr().err


def test_list(capsys):
    assert main(["retrievers", "list"]) == 0
    assert {"bm25", "hybrid", "rerank"} <= set(capsys.readouterr().out.split())


def test_pairs_from_qrels(tmp_path, capsys, beir):
    out = tmp_path / "pairs.jsonl"
    assert main(["retrievers", "pairs", "--qrels", str(beir / "qrels.tsv"), "--queries",
                 str(beir / "queries.jsonl"), "--corpus", str(beir / "corpus.jsonl"), "--out",
                 str(out), "--negatives", "1"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 3 and all(len(r["negatives"]) == 1 for r in rows)


def test_train_rejects_a_bad_pairs_file(tmp_path, capsys):
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"query": "q", "positive": "p"}\n{"query": "q"}\n')
    assert main(["retrievers", "train", "--pairs", str(bad)]) == 2
    assert "line 2: 'positive' must be non-empty text" in capsys.readouterr().err
