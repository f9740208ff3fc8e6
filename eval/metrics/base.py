"""The ``Metric`` role: what a metric sees (:class:`Sample`), what it returns (:class:`Score`).

A metric implements one method, :meth:`Metric.score`, for one sample; :meth:`Metric.score_many`
is derived from it (metrics that need the whole run at once, such as ranx's, override it instead).
A metric declares the sample fields it needs (``needs``); a sample without them gets a
"not applicable" score with the reason, not a zero. A metric that fails on a sample (a judge
timeout, unparsable output, a library error) gets NaN with the reason recorded: one bad case
never stops a run.

Example:
    >>> from eval.metrics.base import Metric, Sample, Score
    >>> class Length(Metric):
    ...     name = "length"
    ...     needs = ("answer",)
    ...     def score(self, sample):
    ...         return Score(len(sample.answer))
    >>> [s.value for s in Length().score_many([Sample("q", "four"), Sample("q", "")])]
    [4.0, None]
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Literal

Status = Literal["ok", "n/a", "error"]


@dataclass(frozen=True)
class Score:
    """One metric's value on one case.

    Attributes:
        value: the score; None when the metric does not apply, NaN when it failed.
        reason: why it does not apply or failed (or a short explanation of the value).
    """

    value: float | None
    reason: str = ""

    def __post_init__(self) -> None:
        if self.value is not None:
            object.__setattr__(self, "value", float(self.value))

    @classmethod
    def na(cls, reason: str) -> Score:
        return cls(None, reason)

    @classmethod
    def failed(cls, reason: str) -> Score:
        return cls(math.nan, reason)

    @property
    def status(self) -> Status:
        if self.value is None:
            return "n/a"
        return "error" if math.isnan(self.value) else "ok"

    def to_dict(self) -> dict[str, Any]:
        value = None if self.value is None or math.isnan(self.value) else self.value
        out: dict[str, Any] = {"value": value, "status": self.status}
        if self.reason:
            out["reason"] = self.reason
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Score:
        status = data.get("status", "ok")
        if status == "error":
            return cls.failed(data.get("reason", ""))
        return cls(data.get("value"), data.get("reason", ""))


@dataclass(frozen=True)
class Retrieved:
    """A chunk the retriever returned, in rank order."""

    id: str
    source: str = ""
    relevance: float = 0.0


@dataclass(frozen=True)
class Sample:
    """What the app produced for one test case, next to what was expected.

    Attributes:
        question: the question asked.
        answer: the app's answer.
        contexts: the chunk texts given to the model, in prompt order.
        cited: for each context, whether the answer cites it (``[n]``).
        context_ids: the chunk ids of ``contexts``.
        context_sources: the source paths of ``contexts``.
        retrieved: everything the retriever returned, best first (may be longer than contexts).
        reference: the reference answer.
        answers: every acceptable answer (reference first).
        reference_contexts: passages that support the reference.
        relevant_ids: chunk ids or source names that answer the question.
        found: false when the app found nothing relevant and did not call the model.
    """

    question: str
    answer: str
    contexts: tuple[str, ...] = ()
    cited: tuple[bool, ...] = ()
    context_ids: tuple[str, ...] = ()
    context_sources: tuple[str, ...] = ()
    retrieved: tuple[Retrieved, ...] = ()
    reference: str = ""
    answers: tuple[str, ...] = ()
    reference_contexts: tuple[str, ...] = ()
    relevant_ids: tuple[str, ...] = ()
    found: bool = True
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


_FIELD_LABELS = {
    "answer": "no answer",
    "reference": "no reference answer",
    "answers": "no reference answer",
    "contexts": "no retrieved context",
    "reference_contexts": "no reference contexts",
    "relevant_ids": "no relevant ids",
}


def matches_id(wanted: str, chunk_id: str, source: str) -> bool:
    """Whether a relevant id names this chunk: its chunk id, its source path, or the end of the
    source path (whole path segments) with or without the file extension."""
    if not wanted:
        return False
    if wanted in (chunk_id, source):
        return True
    if not source:
        return False
    path = PurePath(source)
    want = PurePath(wanted).parts
    for candidate in (path.parts, path.with_suffix("").parts):
        if len(want) <= len(candidate) and tuple(candidate[-len(want):]) == want:
            return True
    return False


class Metric(ABC):
    """Scores samples; subclasses implement :meth:`score` (or override :meth:`score_many`).

    Attributes:
        name: the name in reports, summaries and the profile's ``[quality_gate]``.
        needs: the :class:`Sample` fields that must be non-empty for the metric to apply.
        uses_judge: the metric calls an LLM judge (slow; its scores carry the judge's name).
        higher_is_better: for sorting worst cases first and reading deltas.
    """

    name: str = "metric"
    needs: tuple[str, ...] = ()
    uses_judge: bool = False
    higher_is_better: bool = True

    def not_applicable(self, sample: Sample) -> str | None:
        """The reason this metric does not apply to ``sample``, or None when it does."""
        for name in self.needs:
            value = getattr(sample, name)
            if not value or (isinstance(value, str) and not value.strip()):
                return _FIELD_LABELS.get(name, f"no {name}")
        return None

    @abstractmethod
    def score(self, sample: Sample) -> Score:
        """Score one sample that :meth:`not_applicable` accepted."""

    def score_many(self, samples: Sequence[Sample],
                   progress: Callable[[int], None] | None = None) -> list[Score]:
        """Score every sample: "n/a" where the metric does not apply, NaN with the reason where
        it fails."""
        out = []
        for sample in samples:
            reason = self.not_applicable(sample)
            if reason:
                out.append(Score.na(reason))
            else:
                try:
                    out.append(self.score(sample))
                except Exception as exc:  # noqa: BLE001 - one case's failure is recorded, not raised
                    out.append(Score.failed(f"{type(exc).__name__}: {exc}"))
            if progress:
                progress(1)
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
