"""Preference data: the JSONL format, its errors by line, the builders and the split by prompt."""

from __future__ import annotations

import pytest

from appkit.models.reward import reward_prompt
from finetune.check import REFUSAL
from finetune.data import DataError, Example
from finetune.prefs import (
    HARMLESS_FILE, Preference, automatic_pairs, harmless_pairs, passage_span,
    read_preferences, split_preferences, write_preferences)
from tests.finetune.conftest import write_jsonl


def _rows(n: int = 6) -> list[Example]:
    return [Example(f"Question {i}?", f"answer-{i}", input=f"Passage {i} says answer-{i}.",
                    group=f"g{i}") for i in range(n)]


def test_round_trip(tmp_path):
    pairs = [Preference("Question: a?", "yes [1]", "no", "grounded"),
             Preference("Question: b?", "ok", "bad")]
    path = write_preferences(pairs, tmp_path / "p.jsonl")
    assert read_preferences(path) == (pairs, [])


@pytest.mark.parametrize("row, message", [
    ({"prompt": "Q", "chosen": "same", "rejected": "same"}, "chosen and rejected are the same"),
    ({"prompt": "Q", "chosen": "a"}, "'rejected' is missing"),
    ({"chosen": "a", "rejected": "b"}, "'prompt' is missing"),
    ({"prompt": "  ", "chosen": "a", "rejected": "b"}, "the prompt is empty"),
    ({"prompt": "Q", "chosen": "", "rejected": "b"}, "'chosen' is empty"),
    ({"prompt": "Q", "chosen": 3, "rejected": "b"}, "'chosen' must be a string"),
])
def test_bad_pairs_are_reported_by_line(tmp_path, row, message):
    good = {"prompt": "Q", "chosen": "a", "rejected": "b"}
    path = write_jsonl(tmp_path / "p.jsonl", [good, "", row])
    with pytest.raises(DataError, match=rf"p\.jsonl, line 3: .*{message}"):
        read_preferences(path)
    pairs, problems = read_preferences(path, on_error="skip")
    assert len(pairs) == 1 and len(problems) == 1 and "line 3" in problems[0]


def test_not_json_is_reported_by_line(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", ['{"prompt": "Q", "chosen": "a", "rejected": "b"}',
                                              "{oops"])
    with pytest.raises(DataError, match="line 2: not JSON"):
        read_preferences(path)


def test_automatic_pairs_ground_and_refuse():
    pairs = automatic_pairs(_rows())
    grounded = [p for p in pairs if p.source == "grounded"]
    unanswerable = [p for p in pairs if p.source == "unanswerable"]
    assert len(grounded) == 6 and len(unanswerable) == 12
    g = grounded[0]
    assert g.prompt == reward_prompt("Question 0?", ["Passage 0 says answer-0."])
    assert g.chosen == "answer-0 [1]" and g.rejected.endswith("[1]") and g.rejected != g.chosen
    u = unanswerable[0]
    assert u.chosen == REFUSAL and u.rejected == "answer-0" and "Passage 0" not in u.prompt
    # and over a span of the unrelated passage it was given, cited: what a policy copies
    hard = unanswerable[1]
    assert hard.prompt == u.prompt and hard.chosen == REFUSAL and hard.rejected.endswith(" [1]")
    assert hard.rejected.removesuffix(" [1]") in hard.prompt
    # refusing an answerable question is the worse answer on its own passage
    answerable = [p for p in pairs if p.source == "answerable"]
    assert len(answerable) == 6
    assert answerable[0].prompt == g.prompt
    assert answerable[0].chosen == "answer-0 [1]" and answerable[0].rejected == REFUSAL


def test_near_miss_pairs_are_wrong_spans_of_the_right_passage():
    passage = "In 1850 the river town of Aldport built a bridge of red stone."
    rows = [Example("When was the bridge built?", "1850", input=passage, group="a"),
            Example("What was the bridge made of?", "red stone", input=passage, group="a"),
            Example("Where was it built?", "the river town of Aldport", input=passage, group="a"),
            Example("What colour was the stone?", "red", input=passage, group="a"),
            *_rows(3)]
    assert not [p for p in automatic_pairs(rows) if p.source == "near-miss"]
    pairs = automatic_pairs(rows, near_miss=True)
    near = {p.chosen: p for p in pairs if p.source == "near-miss"}
    assert len(near) == 7  # every answer
    # another question's answer about the same passage, never one sharing a word with the
    # answer ("red" is half of "red stone")
    assert near["red stone [1]"].rejected in {"1850 [1]", "the river town of Aldport [1]"}
    assert near["red [1]"].rejected in {"1850 [1]", "the river town of Aldport [1]"}
    assert near["1850 [1]"].prompt == reward_prompt("When was the bridge built?", [passage])
    # else a span of the passage as long as the answer: "Passage 0 says answer-0."
    assert near["answer-0 [1]"].rejected in {"Passage [1]", "says [1]"}
    # the other kinds stay as they were
    assert [p for p in pairs if p.source != "near-miss"] == automatic_pairs(rows)


def test_passage_span_stays_in_one_sentence_and_off_the_answer():
    import random

    passage = "Ada built the mill in 1850. It burned down in 1901, the year of the flood."
    spans = {passage_span(passage, 2, "the mill", random.Random(i)) for i in range(40)}
    assert spans and None not in spans
    for span in spans:
        assert span in passage and "mill" not in span and ". " not in span
    assert passage_span("a b", 3, "x", random.Random(0)) is None  # too short
    assert passage_span("the of in", 1, "x", random.Random(0)) is None  # no content word


def test_harmless_set_is_valid_and_declines():
    raw, problems = read_preferences(HARMLESS_FILE)
    assert problems == [] and len(raw) >= 30
    pairs = harmless_pairs()
    assert all(p.source == "harmless" and p.prompt.startswith("Question: ") for p in pairs)
    assert len({p.prompt for p in pairs}) == len(pairs)
    assert all(any(w in p.chosen for w in ("can't", "won't", "not able", "rather not", "I'm not"))
               for p in pairs)


def test_split_is_by_prompt_and_seeded():
    pairs = automatic_pairs(_rows(10))
    train, held = split_preferences(pairs, 0.2, seed=1)
    assert not {p.prompt for p in train} & {p.prompt for p in held}
    assert len(train) + len(held) == len(pairs) and held
    assert split_preferences(pairs, 0.2, seed=1) == (train, held)
    assert split_preferences(pairs, 0.2, seed=2) != (train, held)


def test_split_needs_two_prompts():
    with pytest.raises(DataError, match="at least two different prompts"):
        split_preferences([Preference("Q", "a", "b")] * 3)


def test_feedback_preferences(tmp_path):
    from appkit.feedback import FeedbackRecord, FeedbackStore
    from finetune.prefs import feedback_preferences

    contexts = [{"index": 1, "source": "/d/b.md", "chunk_id": "c1", "text": "Budget 40k."}]
    messages = [{"role": "user", "content": "Sources:\n[1] Budget 40k.\n\nQuestion: Budget?"}]
    store = FeedbackStore.for_data_dir(tmp_path)
    store.put(FeedbackRecord(id="a", question="Budget?", answer="50k [1]", rating=-1,
                             correction="40k [1]", messages=messages, contexts=contexts))
    store.close()
    [pair] = feedback_preferences(tmp_path)
    assert pair == Preference(reward_prompt("Budget?", ["Budget 40k."]), "40k [1]", "50k [1]",
                              "feedback:correction")
