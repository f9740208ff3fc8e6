"""Citation correctness: the cited chunk holds the supporting text."""

from __future__ import annotations

from eval.metrics.base import Sample, matches_id
from eval.metrics.citations import CitationCorrectness, HasCitation, supports

CONTEXTS = ("The beta budget is forty thousand euros for Q3.", "Two engineers work on beta.")


def test_supports_short_answers_by_normalised_substring() -> None:
    assert supports(CONTEXTS[0], "Forty thousand euros!")
    assert not supports(CONTEXTS[1], "forty thousand euros")
    assert supports(CONTEXTS[0], "forty")  # whole words
    assert not supports("fortyfive euros", "forty")  # not inside a word


def test_supports_long_answers_by_token_recall() -> None:
    long_ref = "two engineers work on beta full"  # 5 of 6 tokens present: 0.83 >= 0.8
    assert supports(CONTEXTS[1], long_ref)
    assert not supports(CONTEXTS[0], long_ref)


def test_share_of_cited_chunks_that_hold_the_answer() -> None:
    m = CitationCorrectness()
    both = Sample("q", "40k [1][2]", contexts=CONTEXTS, cited=(True, True),
                  answers=("forty thousand euros",))
    assert m.score(both).value == 0.5
    right = Sample("q", "40k [1]", contexts=CONTEXTS, cited=(True, False),
                   answers=("forty thousand euros",))
    assert m.score(right).value == 1.0


def test_without_citations_it_does_not_apply_and_has_citation_is_zero() -> None:
    s = Sample("q", "40k", contexts=CONTEXTS, cited=(False, False), answers=("40k",))
    assert CitationCorrectness().score_many([s])[0].reason == "the answer cites no source"
    assert HasCitation().score(s).value == 0.0


def test_falls_back_to_relevant_ids_without_reference_answers() -> None:
    s = Sample("q", "x [2]", contexts=CONTEXTS, cited=(False, True), context_ids=("c1", "c2"),
               context_sources=("/d/budget.md", "/d/notes/staff.md"), relevant_ids=("staff",))
    assert CitationCorrectness().score(s).value == 1.0


def test_matches_id_by_chunk_id_path_or_path_tail() -> None:
    assert matches_id("c9", "c9", "/x/y.txt")
    assert matches_id("/x/y.txt", "c9", "/x/y.txt")
    assert matches_id("y", "c9", "/x/y.txt")
    assert matches_id("x/y", "c9", "/x/y.txt")
    assert matches_id("Super_Bowl_50/p003", "c", "/c/Super_Bowl_50/p003.txt")
    assert not matches_id("p00", "c", "/c/Super_Bowl_50/p003.txt")
    assert not matches_id("", "", "")
