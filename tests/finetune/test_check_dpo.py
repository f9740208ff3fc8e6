"""The before/after check's scoring and report, and preference pairs for DPO."""

from __future__ import annotations

import pytest

from appkit.testing import FakeChatModel
from finetune.check import CheckReport, clean_answer, is_refusal, rows_from_testset, score_rows
from finetune.data import DataError, Example
from finetune.dpo import PreferencePair, auto_pairs, feedback_pairs, read_pairs, write_pairs
from tests.finetune.conftest import write_jsonl


def test_refusals_and_citations():
    assert is_refusal("The documents do not say.") and is_refusal("I don\u2019t know")
    assert not is_refusal("Paris")
    assert clean_answer("Paris [1]. ") == "Paris." and clean_answer("x [1, 2]") == "x"


def test_score_rows_uses_squad_metrics_with_every_reference():
    rows = [Example("Capital?", "Paris ||| the city of Paris", input="Paris is the capital."),
            Example("Colour?", "blue", input="The sky is blue.")]
    model = FakeChatModel(replies=["the city of Paris [1]", "The documents do not say."])
    s = score_rows(model, rows, progress=False)
    assert s.exact_match == 50.0 and s.token_f1 == 50.0 and s.refusal_rate == 50.0
    assert s.answers == ["the city of Paris", "The documents do not say."]


def test_eval_sets_in_testset_format_keep_all_answers(tmp_path):
    path = write_jsonl(tmp_path / "set.jsonl", [
        {"question": "Q?", "reference": "a", "references": ["b"], "reference_contexts": ["c"]}])
    assert rows_from_testset(path) == [Example("Q?", "a ||| b", input="c")]


def test_report_warns_when_the_retain_score_drops():
    s = {"exact_match": 10.0, "token_f1": 40.0, "refusal_rate": 0.0, "n": 5, "seconds": 1.0}
    report = CheckReport("r", "e.jsonl", s, {**s, "token_f1": 55.0}, retain_set="keep.jsonl",
                         retain_before=s, retain_after={**s, "token_f1": 35.0}, threshold=2.0)
    assert report.delta == 15.0 and report.retain_delta == -5.0
    assert report.to_dict()["retain_delta_token_f1"] == -5.0
    text = report.render()
    assert "delta F1 +15.0" in text and "delta F1 -5.0" in text


def test_auto_pairs_prefer_refusing_on_unrelated_passages():
    rows = [Example(f"q{i}", f"a{i}", input=f"passage {i % 3}", group=f"g{i % 3}")
            for i in range(6)]
    pairs = auto_pairs(rows, seed=1)
    unanswerable = [p for p in pairs if p.kind == "unanswerable"]
    assert len(unanswerable) == 6 and len(pairs) == 12
    for p, r in zip(unanswerable, rows):
        assert p.chosen == "The documents do not say." and p.rejected == r.output
        assert p.context != r.input
    with pytest.raises(DataError, match="at least two"):
        auto_pairs(rows[:1])


def test_pairs_file_round_trip_and_bad_lines(tmp_path):
    pairs = [PreferencePair("q", "good", "bad", context="c", kind="file")]
    path = write_pairs(pairs, tmp_path / "pairs.jsonl")
    assert read_pairs(path) == pairs
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "p", "chosen": "x", "rejected": "y"},
                                               {"prompt": "p", "chosen": "x"}])
    with pytest.raises(DataError, match=r"bad\.jsonl line 2: 'rejected' is missing"):
        read_pairs(bad)


def test_feedback_becomes_pairs(tmp_path):
    from appkit.feedback import FeedbackRecord, FeedbackStore

    store = FeedbackStore.for_data_dir(tmp_path)
    store.put(FeedbackRecord(id="a1", question="Budget?", answer="50k [1]", rating=-1,
                             correction="40k [1]",
                             messages=[{"role": "system", "content": "S"},
                                       {"role": "user", "content": "Sources: ... Budget?"}]))
    store.close()
    pairs = feedback_pairs(tmp_path)
    assert len(pairs) == 1
    p = pairs[0]
    assert (p.chosen, p.rejected, p.kind, p.system) == ("40k [1]", "50k [1]", "correction", "S")
    assert [m.content for m in p.messages(None)] == ["S", "Sources: ... Budget?"]
