"""SQuAD exact match and token F1, checked against the official v1.1 definition by hand."""

from __future__ import annotations

import pytest

from eval.metrics.base import Sample
from eval.metrics.squad import ExactMatch, TokenF1, exact_match, normalize_answer, token_f1


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("The Eiffel Tower", "eiffel tower"),  # lower-case, article dropped
        ("  Denver   Broncos! ", "denver broncos"),  # punctuation dropped, spaces collapsed
        ("a cat, an owl and THE dog", "cat owl and dog"),
        ("Theatre", "theatre"),  # "the" only as a whole word
        ("U.S.-born", "usborn"),  # punctuation is deleted, not replaced by a space
        ("", ""),
    ],
)
def test_normalisation_follows_the_official_order(text: str, normal: str) -> None:
    assert normalize_answer(text) == normal


def test_exact_match_takes_the_best_reference() -> None:
    assert exact_match("Denver Broncos", ["Carolina Panthers", "the Denver Broncos"]) == 1.0
    assert exact_match("Broncos", ["Denver Broncos"]) == 0.0


@pytest.mark.parametrize(
    ("prediction", "references", "expected"),
    [
        # 2 shared of 3 predicted, 2 of 2 reference tokens: P 2/3, R 1, F1 0.8
        ("the Denver Broncos team", ["Denver Broncos"], 0.8),
        # shared tokens count with multiplicity: pred "a a b" vs ref "a b b" -> 2 shared
        ("x x y", ["x y y"], 2 / 3),
        ("Santa Clara", ["Levi's Stadium"], 0.0),
        # articles and punctuation vanish before counting
        ("The answer, is: 42.", ["answer is 42"], 1.0),
        # best of several references
        ("in 1889", ["1887", "1889"], 2 * (1 / 2 * 1) / (1 / 2 + 1)),
        # an answer that normalises to nothing scores 0, not a division error
        ("the", ["Paris"], 0.0),
    ],
)
def test_token_f1_by_hand(prediction: str, references: list[str], expected: float) -> None:
    assert token_f1(prediction, references) == pytest.approx(expected)


def test_metric_classes_apply_only_with_reference_answers() -> None:
    with_ref = Sample("q", "Paris.", answers=("paris", "Paris, France"))
    without = Sample("q", "Paris.")
    em, f1 = ExactMatch(), TokenF1()
    assert [s.value for s in em.score_many([with_ref, without])] == [1.0, None]
    assert f1.score_many([without])[0].reason == "no reference answer"
    assert f1.score(with_ref).value == 1.0
