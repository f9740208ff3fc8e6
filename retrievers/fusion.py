"""Reciprocal rank fusion (Cormack, Clarke and Büttcher, SIGIR 2009), with a weight per ranking.

A chunk's fused score is ``sum(weight_i / (k + rank_i))`` over the rankings it appears in (ranks
from 1). With equal weights this is exactly ranx's ``fuse(method="rrf")``, which the benchmark and
``tests/retrievers/test_fusion.py`` check. It is written out here rather than called from ranx
because ranx works on whole runs through numba (seconds of compilation on first use), and this runs
once per query inside a retriever.

Example:
    >>> from retrievers.fusion import reciprocal_rank_fusion
    >>> reciprocal_rank_fusion([["a", "b"], ["b", "c"]], k=60)[0][0]
    'b'
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence


def reciprocal_rank_fusion(rankings: Sequence[Sequence[Hashable]],
                           weights: Sequence[float] | None = None,
                           k: int = 60) -> list[tuple[Hashable, float]]:
    """Fuse rankings (best first) into one list of (item, score), best first.

    Ties keep the order in which items were first seen, so the result is deterministic.

    Args:
        rankings: each a sequence of item ids, best first (an id repeated in one ranking counts once,
            at its best rank).
        weights: one non-negative weight per ranking (default: all 1).
        k: the RRF constant; larger values flatten the difference between top and lower ranks.

    Raises:
        ValueError: when the weights do not match the rankings or k < 1.
    """
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    scores: dict[Hashable, float] = {}
    for ranking, weight in zip(rankings, weights):
        seen: set[Hashable] = set()
        for rank, item in enumerate(ranking, start=1):
            if item in seen:
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    order = {item: i for i, item in enumerate(scores)}
    return sorted(scores.items(), key=lambda kv: (-kv[1], order[kv[0]]))
