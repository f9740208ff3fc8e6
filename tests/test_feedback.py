"""The feedback store and its exports (preference pairs for DPO, an eval set)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from appkit.feedback import (
    FeedbackRecord,
    FeedbackStore,
    eval_set,
    iter_jsonl,
    preference_pairs,
    write_jsonl,
)

MESSAGES = [{"role": "system", "content": "Use the sources."},
            {"role": "user", "content": "Sources:\n[1] (b.md)\nBudget 40k.\n\nQuestion: Budget?"}]
CONTEXTS = [{"index": 1, "source": "/d/b.md", "chunk_id": "c1", "text": "Budget 40k.",
             "cited": True},
            {"index": 2, "source": "/d/x.md", "chunk_id": "c2", "text": "Other.", "cited": False}]


def record(id: str, answer: str, rating: int | None = None, correction: str = "",
           messages=MESSAGES) -> FeedbackRecord:
    return FeedbackRecord(id=id, question="Budget?", answer=answer, rating=rating,
                          correction=correction, messages=list(messages), contexts=CONTEXTS,
                          settings={"chat_model": "m"})


def test_put_updates_in_place_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "feedback.sqlite"
    store = FeedbackStore(path)
    store.put(record("a", "50k [1]", rating=-1))
    first = store.get("a")
    store.put(record("a", "50k [1]", rating=-1, correction="40k [1]"))
    store.close()
    again = FeedbackStore(path)
    [only] = again.all()
    assert only.correction == "40k [1]" and only.created_at == first.created_at
    assert only.contexts == CONTEXTS and only.messages == MESSAGES
    assert again.summary() == {"up": 0, "down": 1, "corrected": 1, "total": 1}
    again.delete(["a"])
    assert again.count() == 0


def test_unknown_keys_from_newer_versions_are_ignored() -> None:
    data = record("a", "x").to_dict() | {"from_the_future": 1}
    assert FeedbackRecord.from_dict(data).id == "a"


def test_concurrent_writers(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "f.sqlite")
    threads = [threading.Thread(target=lambda i=i: store.put(record(f"r{i}", "a", rating=1)))
               for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.count() == 20


def test_preference_pairs() -> None:
    other_prompt = [*MESSAGES[:-1], {"role": "user", "content": "another prompt"}]
    pairs = preference_pairs([
        record("fix", "50k [1]", rating=-1, correction="40k [1]"),
        record("up", "40k [1]", rating=1),
        record("down", "I do not know.", rating=-1),
        record("up-elsewhere", "40k", rating=1, messages=other_prompt),
        record("same-text", "50k [1]", rating=-1, correction="50k [1]"),  # not a correction
    ])
    got = sorted((p["origin"], p["chosen"], p["rejected"]) for p in pairs)
    assert got == [("correction", "40k [1]", "50k [1]"),
                   ("rating", "40k [1]", "50k [1]"),
                   ("rating", "40k [1]", "50k [1]"),
                   ("rating", "40k [1]", "I do not know.")]
    pair = pairs[0]
    assert pair["prompt"] == MESSAGES[-1]["content"] and pair["system"] == "Use the sources."
    assert pair["messages"] == MESSAGES and pair["contexts"] == ["Budget 40k.", "Other."]


def test_eval_set_rows_follow_the_testset_format() -> None:
    rows = eval_set([record("fix", "50k", rating=-1, correction="40k [1]"),
                     record("up", "40k [1]", rating=1), record("down", "no", rating=-1)])
    assert [(r["id"], r["reference"]) for r in rows] == [("fix", "40k [1]"), ("up", "40k [1]")]
    assert rows[0]["reference_contexts"] == ["Budget 40k."]
    assert rows[0]["relevant_ids"] == ["/d/b.md"] and rows[0]["task"] == "qa"


def test_eval_set_reads_back_with_the_eval_layer(tmp_path: Path) -> None:
    import pytest

    testset = pytest.importorskip("eval.testset")
    out = tmp_path / "set.jsonl"
    write_jsonl(eval_set([record("up", "40k [1]", rating=1)]), out)
    cases, problems = testset.parse_testset(out.read_text().splitlines(), on_error="skip")
    assert not problems and cases[0].question == "Budget?" and cases[0].reference == "40k [1]"


def test_jsonl_round_trip(tmp_path: Path) -> None:
    rows = [{"q": "é", "n": 1}, {"q": "b"}]
    assert write_jsonl(rows, tmp_path / "x.jsonl") == 2
    assert list(iter_jsonl(tmp_path / "x.jsonl")) == rows
    assert json.loads((tmp_path / "x.jsonl").read_text(encoding="utf-8").splitlines()[0])["q"] == "é"
