"""Citation metrics: does the answer cite a source, and do the cited chunks hold the support?

``citation_correctness`` is the share of cited chunks that contain the supporting text. The
supporting text is a reference answer: a cited chunk supports the answer when a normalised
reference answer (SQuAD normalisation) occurs in its normalised text, or, for reference answers of
five tokens or more, when the chunk holds at least 80% of the reference's tokens. Without reference
answers, a cited chunk is correct when it matches one of the case's relevant ids. An answer that
cites nothing gets "n/a" here and 0 in ``has_citation``.

Example:
    >>> from eval.metrics.citations import CitationCorrectness
    >>> from eval.metrics.base import Sample
    >>> s = Sample("q", "It is 40k [1].", contexts=("The budget is 40k.", "Staff: two."),
    ...            cited=(True, False), answers=("40k",))
    >>> CitationCorrectness().score(s).value
    1.0
"""

from __future__ import annotations

from collections import Counter

from eval.metrics.base import Metric, Sample, Score, matches_id
from eval.metrics.squad import normalize_answer

TOKEN_RECALL = 0.8
LONG_ANSWER_TOKENS = 5


def supports(chunk: str, reference: str) -> bool:
    """Whether ``chunk`` contains the supporting text ``reference`` (see the module doc)."""
    ref = normalize_answer(reference)
    if not ref:
        return False
    text = normalize_answer(chunk)
    if f" {ref} " in f" {text} ":
        return True
    ref_tokens = ref.split()
    if len(ref_tokens) < LONG_ANSWER_TOKENS:
        return False
    shared = sum((Counter(ref_tokens) & Counter(text.split())).values())
    return shared / len(ref_tokens) >= TOKEN_RECALL


class CitationCorrectness(Metric):
    """Share of the cited chunks that contain the supporting text.

    Example:
        >>> from eval.metrics.citations import CitationCorrectness
        >>> CitationCorrectness().name
        'citation_correctness'
    """

    name = "citation_correctness"
    needs = ("answer", "contexts")

    def not_applicable(self, sample: Sample) -> str | None:
        reason = super().not_applicable(sample)
        if reason:
            return reason
        if not any(sample.cited):
            return "the answer cites no source"
        if not sample.answers and not sample.relevant_ids:
            return "no reference answer or relevant ids to check citations against"
        return None

    def score(self, sample: Sample) -> Score:
        cited = [i for i, c in enumerate(sample.cited) if c and i < len(sample.contexts)]
        good = 0
        for i in cited:
            if sample.answers:
                ok = any(supports(sample.contexts[i], ref) for ref in sample.answers)
            else:
                cid = sample.context_ids[i] if i < len(sample.context_ids) else ""
                src = sample.context_sources[i] if i < len(sample.context_sources) else ""
                ok = any(matches_id(w, cid, src) for w in sample.relevant_ids)
            good += ok
        return Score(good / len(cited), f"{good} of {len(cited)} cited chunks hold the support")


class HasCitation(Metric):
    """1 when the answer cites at least one of the sources it was given, else 0.

    Example:
        >>> from eval.metrics.citations import HasCitation
        >>> from eval.metrics.base import Sample
        >>> HasCitation().score(Sample("q", "x", contexts=("c",), cited=(False,))).value
        0.0
    """

    name = "has_citation"
    needs = ("answer", "contexts")

    def score(self, sample: Sample) -> Score:
        return Score(float(any(sample.cited)))
