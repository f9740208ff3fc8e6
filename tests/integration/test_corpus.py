"""End to end on ``examples/docs`` with the real packaged models and real Chroma.

Each test works on its own copy of the corpus. Answers come from the default chat model
(Qwen2.5-Coder-0.5B) at temperature 0 with short answers, so they are repeatable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from appkit import cli
from appkit.app import App
from appkit.config import Profile, save_profile
from appkit.models.sentence_transformers import SentenceTransformerEmbeddings
from tests.helpers import manifest_ids, store_ids

pytestmark = [pytest.mark.slow, pytest.mark.integration]

FILES = {
    "meetings/2024-06-12-budget-review.md", "onboarding.html", "travel-policy.pdf",
    "product-roadmap.docx", "support-faq.txt", "offices.csv",
}


def corpus_profile(corpus: Path, data: Path) -> Profile:
    return Profile.from_dict({
        "documents": {"paths": [str(corpus)]},
        "chat": {"generation": {"max_tokens": 64, "temperature": 0.0}},
        "store": {"path": str(data)},
    })


@pytest.fixture
def app(corpus: Path, tmp_path: Path, real_embeddings: SentenceTransformerEmbeddings) -> App:
    return App(corpus_profile(corpus, tmp_path / "data"), embeddings=real_embeddings)


def sources(app: App) -> dict[str, int]:
    counts: dict[str, int] = {}
    for doc in app.store.get():
        counts[doc.metadata["source"]] = counts.get(doc.metadata["source"], 0) + 1
    return counts


def forbid_embedding(monkeypatch: pytest.MonkeyPatch, emb: SentenceTransformerEmbeddings) -> None:
    def forbidden(texts):
        raise AssertionError(f"{len(texts)} chunks were embedded again")

    monkeypatch.setattr(emb, "embed_documents", forbidden)


def test_ingest_the_corpus(app: App, corpus: Path) -> None:
    report = app.ingest()
    assert report.ok, report.skipped
    assert report.added == len(FILES) and report.ignored == 0
    counts = sources(app)
    assert set(counts) == {str(corpus / f) for f in FILES}
    assert report.chunks_embedded == sum(counts.values()) == app.store.count()
    assert store_ids(app.store) == manifest_ids(app.ingestor.manifest)

    pages = {d.metadata["page"] for d in app.store.get(where={"file_type": "pdf"})}
    assert pages == {1, 2}
    headings = {d.metadata["heading"] for d in app.store.get(where={"file_type": "md"})}
    assert "Budget review, 12 June 2024 > Decisions > Q3 marketing budget" in headings


def test_reingest_embeds_nothing(app: App, real_embeddings, monkeypatch) -> None:
    app.ingest()
    before = store_ids(app.store)
    forbid_embedding(monkeypatch, real_embeddings)
    report = App(app.profile, embeddings=real_embeddings).ingest()
    assert report.unchanged == len(FILES) and report.chunks_embedded == 0
    assert store_ids(app.store) == before


def test_a_changed_file_is_re_embedded_alone(app: App, corpus: Path) -> None:
    app.ingest()
    faq = corpus / "support-faq.txt"
    old = set(app.ingestor.manifest.get(str(faq)).chunk_ids)
    faq.write_text(faq.read_text() + "\nThe support chat closes at 16:00 on Fridays.\n")
    report = app.ingest()
    assert (report.updated, report.unchanged, report.added) == (1, len(FILES) - 1, 0)
    assert report.chunks_embedded == len(app.ingestor.manifest.get(str(faq)).chunk_ids)
    assert old.isdisjoint(store_ids(app.store))
    assert store_ids(app.store) == manifest_ids(app.ingestor.manifest)
    top = app.store.search("When does the support chat close on Fridays?", k=1)[0]
    assert top.metadata["source"] == str(faq) and "16:00" in top.page_content


def test_a_deleted_file_leaves_the_store(app: App, corpus: Path) -> None:
    app.ingest()
    os.remove(corpus / "onboarding.html")
    report = app.ingest()
    assert report.deleted == 1 and report.chunks_embedded == 0
    assert str(corpus / "onboarding.html") not in sources(app)
    assert store_ids(app.store) == manifest_ids(app.ingestor.manifest)


def test_ask_cites_the_one_file_that_holds_the_answer(app: App, corpus: Path) -> None:
    app.ingest()
    answer = app.ask("How much are hotels reimbursed per night?")
    assert answer.found and answer.model == "qwen2.5-coder-0.5b"
    assert "135" in answer.text, answer.text
    top = answer.citations[0]
    assert top.source == str(corpus / "travel-policy.pdf") and top.page == 2
    named = answer.cited or answer.citations[:1]
    assert any(c.source == str(corpus / "travel-policy.pdf") for c in named)
    assert answer.usage["output_tokens"] <= 64


def test_ask_about_something_the_documents_do_not_cover(app: App) -> None:
    app.ingest()
    strict = App(Profile.from_dict({**app.profile.to_dict(), "retrieval": {"min_relevance": 0.5}}),
                 embeddings=app.embeddings)
    answer = strict.ask("What is the boiling point of liquid nitrogen?")
    assert not answer.found and answer.citations == ()


def test_the_cli_end_to_end(corpus: Path, tmp_path: Path,
                            capsys: pytest.CaptureFixture) -> None:
    path = save_profile(corpus_profile(corpus, tmp_path / "cli-data"), tmp_path / "appkit.toml")
    assert cli.main(["ingest", "--profile", str(path)]) == 0
    assert f"{len(FILES)} added" in capsys.readouterr().out
    assert cli.main(["ask", "--json", "--profile", str(path), "When does Kestrel-2 ship?"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert "14 November" in answer["text"] or "November 14" in answer["text"], answer["text"]
    named = [c for c in answer["citations"] if c["cited"]] or answer["citations"][:1]
    assert any(c["source"] == str(corpus / "product-roadmap.docx") for c in named)
