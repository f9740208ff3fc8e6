"""Two ways to fuse rankings: weighted reciprocal rank fusion and a convex combination of scores.

**Reciprocal rank fusion** (Cormack, Clarke and Büttcher, SIGIR 2009) uses only ranks. A chunk's
fused score is ``sum(weight_i / (k + rank_i))`` over the rankings it appears in (ranks from 1).
With equal weights this is exactly ranx's ``fuse(method="rrf")``, which the benchmark and
``tests/retrievers/test_fusion.py`` check. It is written out here rather than called from ranx
because ranx works on whole runs through numba (seconds of compilation on first use), and this runs
once per query inside a retriever.

**Convex combination** (Bruch, Gai and Ingber, "An Analysis of Fusion Functions for Hybrid
Retrieval", TOIS 2023) min-max normalises each retriever's scores over the union of candidates and
adds them with weights. It keeps how far apart the scores are, which ranks throw away: on SciFact it
beats tuned RRF by about 0.01 nDCG@10 (``benchmarks/RESULTS_retrievers.md``). Every candidate needs a
score from every retriever, so the hybrid retriever fills in the cosine of BM25-only hits and the
BM25 score of dense-only hits.

Example:
    >>> from retrievers.fusion import reciprocal_rank_fusion
    >>> reciprocal_rank_fusion([["a", "b"], ["b", "c"]], k=60)[0][0]
    'b'
    >>> convex_fusion([{"a": 0.9, "b": 0.8}, {"a": 0.0, "b": 7.0}], [0.4, 0.6])[0][0]
    'b'
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence


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


def convex_fusion(scores: Sequence[Mapping[Hashable, float]],
                  weights: Sequence[float] | None = None) -> list[tuple[Hashable, float]]:
    """Fuse score maps into one list of (item, score), best first: ``sum(w_i * minmax_i(score))``.

    Each map is min-max normalised to [0, 1] over the items of *all* maps; an item a map lacks gets
    that map's minimum (it scored no better than the worst candidate), so callers should fill in the
    real scores where they can. A map whose scores are all equal contributes nothing. Ties keep the
    order in which items were first seen.

    Args:
        scores: one {item: score} map per retriever (higher is better).
        weights: one non-negative weight per map (default: all 1).

    Raises:
        ValueError: when the weights do not match the maps.
    """
    if weights is None:
        weights = [1.0] * len(scores)
    if len(weights) != len(scores):
        raise ValueError(f"{len(weights)} weights for {len(scores)} score maps")
    order: dict[Hashable, int] = {}
    for one in scores:
        for item in one:
            order.setdefault(item, len(order))
    fused = dict.fromkeys(order, 0.0)
    for one, weight in zip(scores, weights):
        if not one or weight == 0:
            continue
        low, high = min(one.values()), max(one.values())
        if high <= low:
            continue
        for item in fused:
            fused[item] += weight * (one.get(item, low) - low) / (high - low)
    return sorted(fused.items(), key=lambda kv: (-kv[1], order[kv[0]]))
