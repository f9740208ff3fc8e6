from __future__ import annotations

from langchain_core.documents import Document

from appkit.types import Answer, Citation


def test_citation_from_a_chunk() -> None:
    doc = Document(id="c1", page_content="  Hotels   up to\nEUR 135. " + "x" * 300,
                   metadata={"source": "/d/policy.pdf", "page": 2.0, "relevance": 0.71})
    c = Citation.from_document(3, doc, cited=True, snippet_chars=20)
    assert (c.index, c.page, c.chunk_id, c.relevance, c.cited) == (3, 2, "c1", 0.71, True)
    assert c.snippet == "Hotels up to EUR 135…"
    assert c.label == "policy.pdf:2"


def test_citation_labels() -> None:
    base = dict(index=1, page=None, heading="", snippet="", chunk_id="", relevance=0.0)
    assert Citation(source="/d/a.md", **{**base, "heading": "Q3"}).label == "a.md > Q3"
    assert Citation(source="/d/a.txt", **base).label == "a.txt"


def test_answer_cited_and_to_dict() -> None:
    used = Citation(1, "/d/a.md", None, "", "s", "c1", 0.5, cited=True)
    unused = Citation(2, "/d/b.md", None, "", "s", "c2", 0.4)
    answer = Answer(question="q", text="a [1]", citations=(used, unused))
    assert answer.cited == (used,)
    data = answer.to_dict()
    assert data["citations"][0]["label"] == "a.md" and data["found"] is True
