"""ROUGE with Google's ``rouge-score`` package (the reimplementation of ROUGE-1.5.5).

The F-measure is reported; with several references the best one counts. Stemming is on (Porter),
as in the package's own example.

Example:
    >>> from eval.metrics.rouge import RougeMetric
    >>> from eval.metrics.base import Sample
    >>> m = RougeMetric("rouge1")
    >>> round(m.score(Sample("q", "The quick brown dog jumps on the log.",
    ...                      answers=("The quick brown fox jumps over the lazy dog",))).value, 4)
    0.7059
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from appkit.lazy import require
from eval.metrics.base import Metric, Sample, Score

VARIANTS = ("rouge1", "rouge2", "rougeL", "rougeLsum")


class RougeMetric(Metric):
    """One ROUGE variant's F-measure against the reference answers.

    Example:
        >>> from eval.metrics.rouge import RougeMetric
        >>> RougeMetric("rougeL").name
        'rougeL'

    Args:
        variant: ``rouge1``, ``rouge2``, ``rougeL`` or ``rougeLsum``.
        use_stemmer: Porter-stem tokens before matching.
    """

    needs = ("answers",)

    def __init__(self, variant: str = "rougeL", *, use_stemmer: bool = True):
        if variant not in VARIANTS:
            raise ValueError(f"unknown ROUGE variant '{variant}'; known: {', '.join(VARIANTS)}")
        self.name = variant
        self.variant = variant
        self.use_stemmer = use_stemmer

    @cached_property
    def scorer(self) -> Any:
        rouge_scorer = require("rouge_score.rouge_scorer", extra="eval", package="rouge-score")
        return rouge_scorer.RougeScorer([self.variant], use_stemmer=self.use_stemmer)

    def score(self, sample: Sample) -> Score:
        best = max(self.scorer.score(ref, sample.answer)[self.variant].fmeasure
                   for ref in sample.answers)
        return Score(best)
