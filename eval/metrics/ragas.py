"""RAG metrics with ragas: faithfulness, answer relevancy, context precision and recall with an LLM
judge, and ragas' non-LLM context precision and recall (string similarity to reference contexts).

The judge metrics run one case at a time (the local judge serves one request at a time anyway),
each call under a timeout. A timeout, a judge error or an answer ragas cannot use becomes NaN for
that case with the reason recorded; the other cases go on.

Example:
    >>> from eval.metrics.ragas import NonLLMContextRecall
    >>> from eval.metrics.base import Sample
    >>> s = Sample("q", "a", contexts=("The Eiffel Tower is in Paris.",),
    ...            reference_contexts=("The Eiffel Tower is located in Paris.",))
    >>> NonLLMContextRecall().score(s).value  # doctest: +SKIP (imports ragas)
    1.0
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from appkit.lazy import require
from eval.metrics.base import Metric, Sample, Score

if TYPE_CHECKING:
    from eval.judge import Judge


def _ragas(module: str = "ragas") -> Any:
    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
    return require(module, extra="eval", package="ragas")


class _NonLLM(Metric):
    needs = ("contexts", "reference_contexts")
    ragas_class = ""

    @cached_property
    def metric(self) -> Any:
        return getattr(_ragas("ragas.metrics"), self.ragas_class)()

    def score(self, sample: Sample) -> Score:
        schema = _ragas("ragas.dataset_schema")
        row = schema.SingleTurnSample(retrieved_contexts=list(sample.contexts),
                                      reference_contexts=list(sample.reference_contexts))
        return Score(asyncio.run(self.metric.single_turn_ascore(row)))


class NonLLMContextPrecision(_NonLLM):
    """ragas ``NonLLMContextPrecisionWithReference``: average precision of the retrieved contexts,
    a context counting as relevant when it is similar (string similarity >= 0.5) to a reference
    context.

    Example:
        >>> from eval.metrics.ragas import NonLLMContextPrecision
        >>> NonLLMContextPrecision().name
        'non_llm_context_precision'
    """

    name = "non_llm_context_precision"
    ragas_class = "NonLLMContextPrecisionWithReference"


class NonLLMContextRecall(_NonLLM):
    """ragas ``NonLLMContextRecall``: share of reference contexts found among the retrieved ones.

    Example:
        >>> from eval.metrics.ragas import NonLLMContextRecall
        >>> NonLLMContextRecall().name
        'non_llm_context_recall'
    """

    name = "non_llm_context_recall"
    ragas_class = "NonLLMContextRecall"


# name -> (ragas collections class, sample fields needed, ragas argument builder)
_JUDGED: dict[str, tuple[str, tuple[str, ...], Callable[[Sample], dict[str, Any]]]] = {
    "faithfulness": ("Faithfulness", ("answer", "contexts"), lambda s: dict(
        user_input=s.question, response=s.answer, retrieved_contexts=list(s.contexts))),
    "answer_relevancy": ("AnswerRelevancy", ("answer",), lambda s: dict(
        user_input=s.question, response=s.answer)),
    "context_precision": ("ContextPrecision", ("reference", "contexts"), lambda s: dict(
        user_input=s.question, reference=s.reference, retrieved_contexts=list(s.contexts))),
    "context_recall": ("ContextRecall", ("reference", "contexts"), lambda s: dict(
        user_input=s.question, reference=s.reference, retrieved_contexts=list(s.contexts))),
}
JUDGED_METRICS = tuple(_JUDGED)


class RagasJudgeMetric(Metric):
    """A ragas metric scored by an LLM judge.

    Example:
        >>> from eval.metrics.ragas import RagasJudgeMetric
        >>> m = RagasJudgeMetric("faithfulness", judge=None)
        >>> m.uses_judge, m.needs
        (True, ('answer', 'contexts'))

    Args:
        name: ``faithfulness``, ``answer_relevancy``, ``context_precision`` or ``context_recall``.
        judge: the :class:`~eval.judge.Judge` (started on first use).
        embeddings: a LangChain embedder, needed by ``answer_relevancy``.
        strictness: questions ``answer_relevancy`` generates per answer (ragas default 3; 1 is
            three times faster on CPU).
    """

    uses_judge = True

    def __init__(self, name: str, judge: Judge | None, *, embeddings: Any = None,
                 strictness: int = 1):
        if name not in _JUDGED:
            raise ValueError(f"unknown ragas metric '{name}'; known: {', '.join(_JUDGED)}")
        self.name = name
        self.judge = judge
        self.embeddings = embeddings
        self.strictness = strictness
        self.ragas_class, self.needs, self._args = _JUDGED[name]

    def _build(self) -> Any:
        if self.judge is None:
            raise ValueError(f"{self.name} needs a judge model")
        collections = _ragas("ragas.metrics.collections")
        cls = getattr(collections, self.ragas_class)
        llm = self.judge.ragas_llm()
        if self.name == "answer_relevancy":
            if self.embeddings is None:
                raise ValueError("answer_relevancy needs an embedding model")
            from eval.judge import ragas_embeddings

            return cls(llm=llm, embeddings=ragas_embeddings(self.embeddings),
                       strictness=self.strictness)
        return cls(llm=llm)

    def score(self, sample: Sample) -> Score:
        return self.score_many([sample])[0]

    def score_many(self, samples: Sequence[Sample],
                   progress: Callable[[int], None] | None = None) -> list[Score]:
        todo = [(i, s) for i, s in enumerate(samples) if not self.not_applicable(s)]
        out: list[Score] = [Score.na(self.not_applicable(s) or "") for s in samples]
        if not todo:
            return out
        try:
            results = asyncio.run(self._score_all([s for _, s in todo], progress))
        except Exception as exc:  # noqa: BLE001 - the judge could not start: every case says why
            reason = f"judge unavailable: {type(exc).__name__}: {exc}"
            results = [Score.failed(reason) for _ in todo]
        for (i, _), score in zip(todo, results):
            out[i] = score
        return out

    async def _ascore(self, metric: Any, sample: Sample) -> Score:
        """One case's score from the metric :meth:`_build` made."""
        result = await metric.ascore(**self._args(sample))
        value = float(result.value)
        if math.isnan(value):
            return Score.failed(
                f"ragas returned NaN ({result.reason or 'the judge found no statements'})")
        return Score(value)

    async def _score_all(self, samples: list[Sample],
                         progress: Callable[[int], None] | None) -> list[Score]:
        metric = self._build()
        timeout = getattr(self.judge, "timeout", 180.0)
        # Steps per metric call: faithfulness makes 2 judge calls, context precision one per
        # context, answer relevancy `strictness`; the timeout is per call, so scale it.
        calls = {"faithfulness": 2, "answer_relevancy": self.strictness, "context_recall": 1}
        out = []
        for sample in samples:
            n_calls = calls.get(self.name, max(1, len(sample.contexts)))
            try:
                out.append(await asyncio.wait_for(self._ascore(metric, sample),
                                                  timeout * n_calls))
            except asyncio.TimeoutError:
                out.append(Score.failed(f"judge timed out after {timeout * n_calls:.0f}s"))
            except Exception as exc:  # noqa: BLE001 - garbage from the judge fails this case only
                text = " ".join(str(exc).split())
                out.append(Score.failed(f"{type(exc).__name__}: {text[:300]}"))
            if progress:
                progress(1)
        return out
