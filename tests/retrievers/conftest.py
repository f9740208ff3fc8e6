"""Fixtures for the retrievers layer: a tiny folder ingested with the hashing embedder (no models)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from appkit.config import Profile, RetrievalConfig, RetrieversConfig, StoreConfig
from appkit.ingest.pipeline import Ingestor
from appkit.retrieval import RetrieverContext
from appkit.store.chroma import ChromaStore
from appkit.testing import FakeChatModel, HashingEmbeddings

DOCS = {
    "space.txt": (
        "The Apollo 11 mission landed the first humans on the Moon in July 1969. Neil Armstrong "
        "and Buzz Aldrin walked on the lunar surface while Michael Collins orbited above. "
        "The lunar module Eagle touched down in the Sea of Tranquility. "
        "Saturn V rockets launched every crewed Apollo flight from Florida. "
        "The Artemis programme plans to return astronauts to the Moon and build a lunar gateway."
    ),
    "fruit.md": (
        "# Orchard\n\nApples are crisp fruit rich in fibre and vitamin C. Orchards in Normandy "
        "press apples into cider. Pears ripen from the inside out, so pick them early.\n\n"
        "# Storage\n\nKeep apples cold and apart from bananas, which release ethylene gas and "
        "make other fruit ripen faster. Citrus keeps for weeks in a cool cellar."
    ),
    "code.md": (
        "# Generators\n\nPython generators yield values lazily, one at a time, which saves memory "
        "when a sequence is long. The itertools module composes generators.\n\n"
        "# Typing\n\nType hints document what a function expects; mypy checks them statically "
        "before the program runs. Protocols describe structural interfaces."
    ),
}


def make_profile(data_dir: Path, **retrievers: object) -> Profile:
    return Profile(
        store=StoreConfig(path=str(data_dir)),
        retrieval=RetrievalConfig(retriever="hybrid", k=3, chunk_size=120, chunk_overlap=30,
                                  min_relevance=0.0),
        retrievers=dataclasses.replace(
            RetrieversConfig(candidates=10, rerank_candidates=6, reranker="llm"), **retrievers),
    )


class Corpus:
    """A folder of documents, a profile, its store and ingestor (hashing embeddings)."""

    def __init__(self, root: Path, **retrievers: object):
        self.folder = root / "docs"
        self.folder.mkdir()
        for name, text in DOCS.items():
            (self.folder / name).write_text(text, encoding="utf-8")
        self.profile = make_profile(root / "data", **retrievers)
        self.embeddings = HashingEmbeddings()
        self.store = ChromaStore(self.profile.store, self.profile.data_dir, self.embeddings)
        self.ingestor = Ingestor(self.profile, embeddings=self.embeddings, store=self.store,
                                 progress=False)
        self.llm = FakeChatModel()

    def ingest(self):
        return self.ingestor.run([self.folder])

    def context(self, **retrievers: object) -> RetrieverContext:
        profile = self.profile
        if retrievers:
            profile = dataclasses.replace(
                profile, retrievers=dataclasses.replace(profile.retrievers, **retrievers))
        return RetrieverContext(profile, self.store, lambda: self.llm)


@pytest.fixture
def corpus(tmp_path: Path) -> Corpus:
    c = Corpus(tmp_path)
    c.ingest()
    return c


@pytest.fixture
def empty_corpus(tmp_path: Path) -> Corpus:
    return Corpus(tmp_path)


@pytest.fixture
def beir(tmp_path: Path) -> Path:
    """A five-document BEIR-layout data set: corpus, queries and qrels."""
    import json

    folder = tmp_path / "beir"
    folder.mkdir()
    corpus = [
        {"_id": "d1", "title": "Statins", "text": "Statins lower LDL cholesterol in adults."},
        {"_id": "d2", "title": "Aspirin", "text": "Aspirin reduces the risk of colon cancer."},
        {"_id": "d3", "title": "Vitamin D", "text": "Vitamin D supplements and bone fractures."},
        {"_id": "d4", "title": "Cholesterol", "text": "Dietary cholesterol and heart disease."},
        {"_id": "d5", "title": "Cancer screening", "text": "Colonoscopy screening finds cancer."},
    ]
    queries = [{"_id": "q1", "text": "do statins lower cholesterol"},
               {"_id": "q2", "text": "aspirin colon cancer"}]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in corpus))
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries))
    (folder / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t1\n"
                                      "q2\td5\t1\n")
    return folder
