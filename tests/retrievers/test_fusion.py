"""Fusion: RRF (the formula, weights, ties, errors, agreement with ranx) and convex combination."""

from __future__ import annotations

import pytest

from retrievers.fusion import convex_fusion, reciprocal_rank_fusion


def test_scores_follow_the_formula():
    fused = dict(reciprocal_rank_fusion([["a", "b", "c"], ["c", "a"]], k=60))
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 62)
    assert fused["b"] == pytest.approx(1 / 62)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)


def test_best_first_and_agreement_wins():
    order = [i for i, _ in reciprocal_rank_fusion([["a", "b", "c"], ["b", "c", "a"]])]
    assert order[0] == "b"  # ranks 2 and 1 beat ranks 1 and 3
    assert set(order) == {"a", "b", "c"}


def test_weights_scale_each_ranking():
    fused = dict(reciprocal_rank_fusion([["a"], ["b"]], weights=[2.0, 1.0], k=10))
    assert fused["a"] == pytest.approx(2 / 11)
    assert fused["b"] == pytest.approx(1 / 11)
    only_first = [i for i, _ in reciprocal_rank_fusion([["a", "b"], ["b", "x"]], weights=[1, 0])]
    assert only_first[:2] == ["a", "b"]


def test_ties_keep_first_seen_order_and_duplicates_count_once():
    assert [i for i, _ in reciprocal_rank_fusion([["a"], ["b"]])] == ["a", "b"]
    fused = dict(reciprocal_rank_fusion([["a", "a", "b"]], k=1))
    assert fused["a"] == pytest.approx(1 / 2)
    assert fused["b"] == pytest.approx(1 / 4)


def test_empty_rankings():
    assert reciprocal_rank_fusion([[], []]) == []
    assert reciprocal_rank_fusion([]) == []


@pytest.mark.parametrize("kwargs", [{"weights": [1.0]}, {"k": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        reciprocal_rank_fusion([["a"], ["b"]], **kwargs)


@pytest.mark.slow  # ranx compiles its kernels with numba on first use: about a minute here
def test_matches_ranx_rrf():
    ranx = pytest.importorskip("ranx")
    runs = {
        "q1": ({"d1": 3.0, "d2": 2.0, "d3": 1.0}, {"d3": 0.9, "d4": 0.8, "d1": 0.1}),
        "q2": ({"d5": 1.0, "d6": 0.5}, {"d6": 2.0, "d7": 1.0, "d5": 0.5}),
    }
    first = ranx.Run({q: a for q, (a, _) in runs.items()})
    second = ranx.Run({q: b for q, (_, b) in runs.items()})
    theirs = ranx.fuse([first, second], method="rrf", params={"k": 60}).to_dict()
    for q, (a, b) in runs.items():
        ours = dict(reciprocal_rank_fusion([sorted(a, key=a.get, reverse=True),
                                            sorted(b, key=b.get, reverse=True)], k=60))
        assert ours.keys() == theirs[q].keys()
        for doc, score in ours.items():
            assert score == pytest.approx(theirs[q][doc], rel=1e-6)


def test_convex_normalises_each_map_over_all_items():
    fused = dict(convex_fusion([{"a": 0.9, "b": 0.7, "c": 0.5}, {"a": 0.0, "b": 10.0, "c": 5.0}],
                               [0.4, 0.6]))
    assert fused["a"] == pytest.approx(0.4 * 1.0 + 0.6 * 0.0)
    assert fused["b"] == pytest.approx(0.4 * 0.5 + 0.6 * 1.0)
    assert fused["c"] == pytest.approx(0.4 * 0.0 + 0.6 * 0.5)
    assert [i for i, _ in convex_fusion([{"a": 0.9, "b": 0.7, "c": 0.5},
                                         {"a": 0.0, "b": 10.0, "c": 5.0}], [0.4, 0.6])] == \
        ["b", "a", "c"]


def test_convex_missing_items_count_as_the_worst_and_flat_maps_add_nothing():
    fused = dict(convex_fusion([{"a": 1.0, "b": 0.0}, {"c": 3.0, "a": 1.0}]))
    assert fused["b"] == pytest.approx(0.0)  # lowest in the first map, absent from the second
    assert fused["c"] == pytest.approx(0.0 + 1.0)  # absent from the first: its minimum
    assert fused["a"] == pytest.approx(1.0 + 0.0)
    assert dict(convex_fusion([{"a": 2.0, "b": 2.0}, {"a": 1.0, "b": 0.0}])) == {"a": 1.0, "b": 0.0}


def test_convex_ties_weights_and_errors():
    assert [i for i, _ in convex_fusion([{"a": 1.0, "b": 1.0}])] == ["a", "b"]
    assert [i for i, _ in convex_fusion([{"a": 1.0, "b": 0.0}, {"a": 0.0, "b": 1.0}], [0, 1])] == \
        ["b", "a"]
    assert convex_fusion([{}, {}]) == [] and convex_fusion([]) == []
    with pytest.raises(ValueError, match="2 weights for 1"):
        convex_fusion([{"a": 1.0}], [1.0, 1.0])
