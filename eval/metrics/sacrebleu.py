"""BLEU and chrF per answer with ``sacrebleu``, scaled to 0..1 (sacrebleu reports 0..100).

Sentence-level BLEU uses ``effective_order`` (sacrebleu's advice for single sentences), so a short
answer is not zeroed for lacking 4-grams. Every reference answer is used as a reference.

Example:
    >>> from eval.metrics.sacrebleu import BleuMetric, ChrfMetric
    >>> from eval.metrics.base import Sample
    >>> BleuMetric().score(Sample("q", "The dog bit the man.", answers=("The dog bit the man.",))).value
    1.0
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

from appkit.lazy import require
from eval.metrics.base import Metric, Sample, Score


def _sacrebleu() -> Any:
    return require("sacrebleu", extra="eval")


class BleuMetric(Metric):
    """Sentence BLEU (sacrebleu defaults, effective order) / 100.

    Example:
        >>> from eval.metrics.sacrebleu import BleuMetric
        >>> BleuMetric().name
        'bleu'
    """

    name = "bleu"
    needs = ("answers",)

    @cached_property
    def bleu(self) -> Any:
        return _sacrebleu().metrics.BLEU(effective_order=True)

    def score(self, sample: Sample) -> Score:
        return Score(self.bleu.sentence_score(sample.answer, list(sample.answers)).score / 100)


class ChrfMetric(Metric):
    """Sentence chrF (character n-gram F-score, beta 2) / 100.

    Example:
        >>> from eval.metrics.sacrebleu import ChrfMetric
        >>> ChrfMetric().name
        'chrf'
    """

    name = "chrf"
    needs = ("answers",)

    @cached_property
    def chrf(self) -> Any:
        return _sacrebleu().metrics.CHRF()

    def score(self, sample: Sample) -> Score:
        return Score(self.chrf.sentence_score(sample.answer, list(sample.answers)).score / 100)
