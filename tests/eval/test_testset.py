"""Test set files: JSONL with line-numbered errors, and the ragas, SQuAD and BEIR importers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eval.testset import (
    TestCase,
    TestsetError,
    from_beir,
    from_ragas,
    from_squad,
    load_testset,
    parse_testset,
    save_testset,
)

GOOD = {"question": "How much is the Q3 budget?", "reference": "40k",
        "references": ["forty thousand"], "relevant_ids": ["beta"], "task": "qa", "id": "b1"}


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_round_trip(tmp_path: Path) -> None:
    cases = [TestCase.from_dict(GOOD), TestCase("Who?", history=(("Hi", "Hello"),),
                                                metadata={"origin": "hand"})]
    path = save_testset(cases, tmp_path / "t.jsonl")
    loaded, problems = load_testset(path)
    assert loaded == cases and not problems
    assert loaded[1].metadata == {"origin": "hand"}
    assert loaded[0].answers == ("40k", "forty thousand")


def test_ids_are_stable_hashes_of_the_question() -> None:
    assert TestCase("Who?").id == TestCase("Who?").id != TestCase("Why?").id


def test_aliases_and_extra_fields_are_kept() -> None:
    case = TestCase.from_dict({"user_input": "Q?", "answer": "A", "source": "x.md"})
    assert (case.question, case.reference, case.metadata) == ("Q?", "A", {"source": "x.md"})


BAD_LINES = [
    json.dumps(GOOD),
    "{not json",
    json.dumps({"reference": "no question"}),
    "",
    "# a comment",
    json.dumps({"question": "Q?", "relevant_ids": "one-id-as-a-string-is-fine"}),
    json.dumps({"question": "Q?", "references": [{"nested": 1}]}),
    json.dumps(["a", "list"]),
    json.dumps({**GOOD, "question": "Same id again?"}),
]


def test_skip_reports_every_bad_line_by_number(tmp_path: Path) -> None:
    cases, problems = load_testset(write(tmp_path / "t.jsonl", BAD_LINES), on_error="skip")
    assert [c.id for c in cases][0] == "b1" and len(cases) == 2
    assert [p.line for p in problems] == [2, 3, 7, 8, 9]
    reasons = [p.reason for p in problems]
    assert reasons[0].startswith("not valid JSON")
    assert reasons[1] == "'question' is missing or empty"
    assert "list of strings" in reasons[2]
    assert "JSON object" in reasons[3]
    assert "duplicate id 'b1'" in reasons[4]


def test_raise_names_the_file_and_first_bad_line(tmp_path: Path) -> None:
    path = write(tmp_path / "t.jsonl", BAD_LINES)
    with pytest.raises(TestsetError, match=r"t\.jsonl, line 2: not valid JSON.*--on-error skip"):
        load_testset(path)


def test_missing_or_empty_files_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(TestsetError, match="no such test set"):
        load_testset(tmp_path / "nope.jsonl")
    with pytest.raises(TestsetError, match="no usable test case .*2 bad lines"):
        load_testset(write(tmp_path / "bad.jsonl", ["{", "[]"]), on_error="skip")
    assert parse_testset(["", "  "]) == ([], [])


def test_ragas_testsets_in_jsonl_and_csv(tmp_path: Path) -> None:
    row = {"user_input": "What is X?", "reference": "X is Y.",
           "reference_contexts": ["X is Y, says the doc."], "synthesizer_name": "single_hop"}
    jsonl = write(tmp_path / "r.jsonl", [json.dumps(row)])
    (case,) = from_ragas(jsonl)
    assert case.reference_contexts == ("X is Y, says the doc.",)
    assert case.metadata == {"synthesizer": "single_hop"}
    csv_path = tmp_path / "r.csv"
    csv_path.write_text('user_input,reference,reference_contexts\n'
                        '"What is X?","X is Y.","[\'X is Y, says the doc.\']"\n', encoding="utf-8")
    assert from_ragas(csv_path)[0].reference_contexts == ("X is Y, says the doc.",)
    with pytest.raises(TestsetError, match="row 1: no 'user_input'"):
        from_ragas(write(tmp_path / "bad.jsonl", [json.dumps({"reference": "x"})]))


SQUAD = {"version": "1.1", "data": [{"title": "Super_Bowl_50", "paragraphs": [
    {"context": "Super Bowl 50 was played in Santa Clara.", "qas": [
        {"id": "a1", "question": "Where was Super Bowl 50 played?",
         "answers": [{"text": "Santa Clara", "answer_start": 28},
                     {"text": "Santa Clara", "answer_start": 28},
                     {"text": "in Santa Clara", "answer_start": 25}]}]},
    {"context": "The Broncos won.", "qas": [
        {"id": "a2", "question": "Who won?", "answers": [{"text": "The Broncos"}]}]}]}]}


def test_squad_import(tmp_path: Path) -> None:
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(SQUAD), encoding="utf-8")
    cases = from_squad(path)
    assert [c.id for c in cases] == ["a1", "a2"]
    assert cases[0].answers == ("Santa Clara", "in Santa Clara")
    assert cases[0].relevant_ids == ("Super_Bowl_50/p000",)
    assert cases[1].relevant_ids == ("Super_Bowl_50/p001",)
    assert cases[1].reference_contexts == ("The Broncos won.",)
    sampled = from_squad(path, sample=1, seed=3)
    assert len(sampled) == 1 and sampled == from_squad(path, sample=1, seed=3)
    (tmp_path / "not.json").write_text("{}", encoding="utf-8")
    with pytest.raises(TestsetError, match="not a SQuAD file"):
        from_squad(tmp_path / "not.json")


def test_beir_import(tmp_path: Path) -> None:
    (tmp_path / "qrels").mkdir()
    write(tmp_path / "queries.jsonl", [json.dumps({"_id": "1", "text": "does x cause y?"}),
                                       json.dumps({"_id": "2", "text": "unjudged"})])
    write(tmp_path / "corpus.jsonl", [json.dumps({"_id": "d1", "title": "T", "text": "x causes y"}),
                                      json.dumps({"_id": "d2", "title": "", "text": "other"})])
    write(tmp_path / "qrels" / "test.tsv",
          ["query-id\tcorpus-id\tscore", "1\td1\t1", "1\td2\t0"])
    (case,) = from_beir(tmp_path)
    assert (case.id, case.question, case.relevant_ids) == ("1", "does x cause y?", ("d1",))
    assert case.reference_contexts == ("T x causes y",) and case.reference == ""
    with pytest.raises(TestsetError, match="cannot read the BEIR folder"):
        from_beir(tmp_path, split="dev")
