"""Saved conversations: round trip, listing, bad files and ids."""

from __future__ import annotations

from pathlib import Path

import pytest

from appkit.types import Answer, Citation
from ui.conversations import Conversation, ConversationStore


def answer(text: str, found: bool = True) -> Answer:
    c = Citation(index=1, source="/d/a.pdf", page=2, heading="", snippet="s", chunk_id="c1",
                 relevance=0.5, cited=True)
    return Answer(question="q", text=text, citations=(c,), found=found, usage={"output_tokens": 3},
                  timings={"first_token": 0.1}, model="m")


def test_round_trip_and_history(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path)
    convo = Conversation.new("/p/appkit.toml")
    convo.add_turn("First?", answer("One [1]."), settings={"k": 4})
    convo.add_turn("Stopped?", answer("Par"), stopped=True)
    convo.add_turn("Nothing?", answer("none", found=False))
    convo.turns[0].contexts = [{"text": "full"}]
    store.save(convo)
    loaded = store.load(convo.id)
    assert loaded.to_dict() == convo.to_dict()
    assert loaded.turns[0].answer.citations[0].label == "a.pdf:2"
    assert loaded.history == [("First?", "One [1].")]  # stopped and not-found answers left out
    assert loaded.title == "First?"


def test_listing_skips_broken_files_and_sorts_newest_first(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path)
    old, new = Conversation.new(), Conversation.new()
    old.add_turn("Old", answer("a"))
    new.add_turn("New", answer("b"))
    old.updated_at, new.updated_at = "2026-01-01T00:00:00", "2026-02-01T00:00:00"
    store.save(old)
    store.save(new)
    (tmp_path / "junk.json").write_text("{not json")
    assert [c["title"] for c in store.list()] == ["New", "Old"]
    store.delete(old.id)
    assert [c["title"] for c in store.list()] == ["New"]
    assert store.load("missing") is None


def test_ids_cannot_escape_the_folder(tmp_path: Path) -> None:
    store = ConversationStore(tmp_path)
    assert store.load("../../etc/passwd") is None
    with pytest.raises(ValueError):
        store.delete("../outside")
