"""Retrieval metrics with ``ranx``: nDCG@k, MRR, Recall@k, Precision@k and hit rate@k.

The run of a case is what the app's retriever returned, best first. Each retrieved chunk becomes
the relevant id it matches (:func:`~eval.metrics.base.matches_id`: a chunk id, a source path or
the end of one), so relevance judged per file and chunks retrieved per file line up; several
chunks of one relevant file count once, at the best rank. Every relevant id has grade 1.

Example:
    >>> from eval.metrics.ranx import RanxMetric, ranked_ids
    >>> from eval.metrics.base import Retrieved, Sample
    >>> s = Sample("q", "a", retrieved=(Retrieved("c1", "/d/x.txt"), Retrieved("c2", "/d/y.txt")),
    ...            relevant_ids=("y",))
    >>> ranked_ids(s)
    ['c1', 'y']
    >>> RanxMetric("mrr").score(s).value  # doctest: +SKIP (numba compiles ranx on first use)
    0.5
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from appkit.lazy import require
from eval.metrics.base import Metric, Sample, Score, matches_id

FAMILIES = ("ndcg", "mrr", "recall", "precision", "hit_rate", "map")
_NAME = re.compile(r"^(ndcg|mrr|recall|precision|hit_rate|map)(@\d+)?$")


def ranked_ids(sample: Sample) -> list[str]:
    """The retrieved chunks as ids comparable with ``relevant_ids``, best first, deduplicated."""
    out: list[str] = []
    for r in sample.retrieved:
        key = next((w for w in sample.relevant_ids if matches_id(w, r.id, r.source)), r.id)
        if key not in out:
            out.append(key)
    return out


class RanxMetric(Metric):
    """One ranx measure over the whole run, reported per case.

    Example:
        >>> from eval.metrics.ranx import RanxMetric
        >>> RanxMetric("hit_rate@5").name
        'hit_rate@5'

    Args:
        measure: a ranx measure name: ``ndcg@5``, ``mrr``, ``recall@5``, ``hit_rate@5`` ...
    """

    needs = ("relevant_ids",)

    def __init__(self, measure: str):
        if not _NAME.match(measure):
            raise ValueError(f"unknown retrieval metric '{measure}'; use one of "
                             f"{', '.join(FAMILIES)}, optionally with @k (e.g. ndcg@5)")
        self.name = measure
        self.measure = measure

    def score(self, sample: Sample) -> Score:
        return self.score_many([sample])[0]

    def score_many(self, samples: Sequence[Sample],
                   progress: Callable[[int], None] | None = None) -> list[Score]:
        out: list[Score | None] = [None] * len(samples)
        qrels: dict[str, dict[str, int]] = {}
        run: dict[str, dict[str, float]] = {}
        for i, sample in enumerate(samples):
            reason = self.not_applicable(sample)
            if reason:
                out[i] = Score.na(reason)
                continue
            ranked = ranked_ids(sample)
            if not ranked:
                out[i] = Score(0.0, "nothing retrieved")
                continue
            qrels[str(i)] = {r: 1 for r in sample.relevant_ids}
            run[str(i)] = {doc: 1.0 / rank for rank, doc in enumerate(ranked, 1)}
        if qrels:
            ranx = require("ranx", extra="eval")
            try:
                judged = ranx.Qrels(qrels)
                values = ranx.evaluate(judged, ranx.Run(run), self.measure, return_mean=False)
                # per-query values come in the order of Qrels.keys() (sorted ids)
                for qid, value in zip(judged.keys(), values):
                    out[int(qid)] = Score(float(value))
            except Exception as exc:  # noqa: BLE001 - recorded per case, the run goes on
                for qid in qrels:
                    out[int(qid)] = Score.failed(f"ranx: {type(exc).__name__}: {exc}")
        if progress:
            progress(len(samples))
        return [s if s is not None else Score.failed("not scored") for s in out]

