"""Retrieval metrics through ranx, on hand-computed runs."""

from __future__ import annotations

import math

import pytest

pytest.importorskip("ranx")

from eval.metrics.base import Retrieved, Sample  # noqa: E402
from eval.metrics.ranx import RanxMetric, ranked_ids  # noqa: E402


def sample(sources: list[str], relevant: tuple[str, ...]) -> Sample:
    return Sample("q", "a", retrieved=tuple(Retrieved(f"c{i}", s) for i, s in enumerate(sources)),
                  relevant_ids=relevant)


SAMPLES = [
    sample(["/d/a.txt", "/d/b.txt", "/d/c.txt"], ("b",)),  # gold at rank 2
    sample(["/d/a.txt", "/d/a.txt", "/d/c.txt"], ("c", "z")),  # c at rank 3, z never
    sample(["/d/x.txt"] * 6 + ["/d/y.txt"], ("y",)),  # y at rank 7
    sample(["/d/a.txt"], ("q",)),  # miss
    sample([], ("a",)),  # nothing retrieved
    Sample("q", "a"),  # no relevant ids: not applicable
]


def test_chunks_of_one_relevant_file_count_once() -> None:
    assert ranked_ids(SAMPLES[2]) == ["c0", "c1", "c2", "c3", "c4", "c5", "y"]
    assert ranked_ids(SAMPLES[1]) == ["c0", "c1", "c"]
    twice = sample(["/d/b.txt", "/d/b.txt", "/d/a.txt"], ("b",))
    assert ranked_ids(twice) == ["b", "c2"]
    assert RanxMetric("recall@2").score(twice).value == 1.0


def values(measure: str) -> list[float | None]:
    return [s.value for s in RanxMetric(measure).score_many(SAMPLES)]


def test_mrr_hit_rate_recall_and_ndcg_by_hand() -> None:
    mrr = values("mrr")
    assert mrr[:5] == pytest.approx([0.5, 1 / 3, 1 / 7, 0.0, 0.0])
    assert mrr[5] is None
    assert values("hit_rate@5")[:5] == pytest.approx([1.0, 1.0, 0.0, 0.0, 0.0])
    assert values("recall@3")[:5] == pytest.approx([1.0, 0.5, 0.0, 0.0, 0.0])
    # nDCG@3, binary gains: one hit at rank 2 -> (1/log2(3)) / 1
    ndcg = values("ndcg@3")
    assert ndcg[0] == pytest.approx(1 / math.log2(3))
    # two relevant (c, z), only c retrieved at rank 3 -> (1/log2(4)) / (1 + 1/log2(3))
    assert ndcg[1] == pytest.approx((1 / 2) / (1 + 1 / math.log2(3)))


def test_unknown_measure_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown retrieval metric"):
        RanxMetric("ndgc@5")
