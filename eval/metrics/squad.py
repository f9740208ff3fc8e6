"""Exact match and token F1 as the official SQuAD v1.1 evaluation script defines them.

Both compare normalised answers: lower-cased, punctuation removed, the articles "a", "an" and
"the" removed, whitespace collapsed. Exact match is 1 when the normalised prediction equals a
normalised reference; F1 is the harmonic mean of token precision and recall, counting each shared
token as often as it occurs in both. With several references the best one counts.

Written from the definition (SQuAD v1.1 ``evaluate-v1.1.py``), not copied.

Example:
    >>> from eval.metrics.squad import exact_match, token_f1
    >>> exact_match("The Eiffel Tower!", ["eiffel tower"])
    1.0
    >>> round(token_f1("in Paris, France", ["Paris"]), 3)
    0.5
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from eval.metrics.base import Metric, Sample, Score

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower-case, drop punctuation, drop articles, collapse whitespace (in the official order)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _f1(prediction: str, reference: str) -> float:
    pred = normalize_answer(prediction).split()
    ref = normalize_answer(reference).split()
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision = same / len(pred)
    recall = same / len(ref)
    return 2 * precision * recall / (precision + recall)


def exact_match(prediction: str, references: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised reference, else 0.0."""
    norm = normalize_answer(prediction)
    return float(any(norm == normalize_answer(r) for r in references))


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """The best token F1 of the prediction against any reference."""
    return max((_f1(prediction, r) for r in references), default=0.0)


class ExactMatch(Metric):
    """SQuAD exact match of the answer against the reference answers.

    Example:
        >>> from eval.metrics.squad import ExactMatch
        >>> from eval.metrics.base import Sample
        >>> ExactMatch().score(Sample("q", "Paris.", answers=("paris",))).value
        1.0
    """

    name = "exact_match"
    needs = ("answers",)

    def score(self, sample: Sample) -> Score:
        return Score(exact_match(sample.answer, sample.answers))


class TokenF1(Metric):
    """SQuAD token F1 of the answer against the reference answers.

    Example:
        >>> from eval.metrics.squad import TokenF1
        >>> from eval.metrics.base import Sample
        >>> TokenF1().score(Sample("q", "Paris", answers=("in Paris",))).value
        1.0
    """

    name = "token_f1"
    needs = ("answers",)

    def score(self, sample: Sample) -> Score:
        return Score(token_f1(sample.answer, sample.answers))
