"""The Source page: the chunk a citation points at, in full, with its neighbours."""

from __future__ import annotations

from appkit.config import load_profile
from tests.ui.conftest import texts
from ui.testing import fake_app


def test_opens_the_cited_chunk(open_page, ingested, ui_profile) -> None:
    store = fake_app(load_profile(ui_profile)).store
    chunk = next(d for d in store.get() if "Maria Lopez" in d.page_content)
    at = open_page("source", chunk=chunk.id)
    assert at.title[0].value == "handbook.md"
    assert "Maria Lopez" in texts(at)
    assert any(e.label in ("Before", "After") for e in at.expander)


def test_unknown_chunk_says_it_is_gone(open_page, ingested) -> None:
    at = open_page("source", chunk="no-such-chunk")
    assert "no longer in the collection" in texts(at)


def test_without_a_chunk(open_page) -> None:
    assert "Open a source" in texts(open_page("source"))
