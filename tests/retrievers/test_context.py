"""Context expansion: neighbouring chunks stitched around a hit, overlap removed, no repeats."""

from __future__ import annotations

from langchain_core.documents import Document

from appkit.retrieval import make_retriever
from retrievers.context import stitch


def test_stitch_removes_the_shared_overlap():
    text = "one two three four five six seven"
    a = Document(page_content=text[:17], metadata={"start_index": 0})  # "one two three fou"
    b = Document(page_content=text[10:], metadata={"start_index": 10})
    assert stitch([a, b]) == text
    assert stitch([Document(page_content="x"), Document(page_content="y")]) == "x\ny"


def test_hits_grow_to_their_neighbours(corpus):
    plain = make_retriever(corpus.context(), "hybrid").invoke("Saturn V rockets", k=1)[0]
    wide = make_retriever(corpus.context(context_window=1), "context").invoke("Saturn V rockets",
                                                                             k=1)[0]
    assert wide.id == plain.id
    assert plain.page_content.strip() in wide.page_content
    assert len(wide.page_content) > len(plain.page_content)
    lo, hi = map(int, wide.metadata["chunk_range"].split("-"))
    i = plain.metadata["chunk_index"]
    assert lo == max(0, i - 1) and hi >= i
    assert len(wide.metadata["context_ids"].split(",")) == hi - lo + 1


def test_no_chunk_is_returned_twice(corpus):
    docs = make_retriever(corpus.context(context_window=2), "context").invoke("Apollo Moon lunar")
    seen: list[str] = []
    for d in docs:
        ids = d.metadata["context_ids"].split(",")
        assert not set(ids) & set(seen)
        seen += ids
