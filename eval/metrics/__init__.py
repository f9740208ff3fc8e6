"""Metrics by name: a registry of factories, so profiles, the CLI and the runner name metrics.

Every metric is an :class:`~eval.metrics.base.Metric`. Factories take a
:class:`MetricContext` (the judge and the embedder, built only when a metric needs them).
Retrieval metrics take ``@k``: ``ndcg@10``, ``recall@5``, ``hit_rate@5``.

Example:
    >>> from eval.metrics import make_metrics, metric_names
    >>> [m.name for m in make_metrics(["exact_match", "token_f1", "ndcg@10"])]
    ['exact_match', 'token_f1', 'ndcg@10']
    >>> "faithfulness" in metric_names()
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from appkit.errors import AppkitError
from eval.metrics.base import Metric, Retrieved, Sample, Score, matches_id

__all__ = [
    "ALIGNMENT_METRICS", "DEFAULT_METRICS", "JUDGE_METRICS", "Metric", "MetricContext", "Retrieved", "Sample", "Score",
    "make_metric", "make_metrics", "matches_id", "metric_names", "register_metric",
]


@dataclass
class MetricContext:
    """What a metric factory may use; each is created lazily by the runner.

    Attributes:
        judge: a callable returning the :class:`~eval.judge.Judge`.
        embeddings: a callable returning the profile's LangChain embedder.
        reward: a callable returning the profile's reward model (``chat.reward_model``).
    """

    judge: Callable[[], Any] | None = None
    embeddings: Callable[[], Any] | None = None
    reward: Callable[[], Any] | None = None


MetricFactory = Callable[[MetricContext, str], Metric]
_factories: dict[str, MetricFactory] = {}


def register_metric(name: str, factory: MetricFactory) -> None:
    """Make ``factory(context, full_name)`` available as ``name`` (``name@k`` for ranked ones)."""
    _factories[name] = factory


def metric_names() -> list[str]:
    return sorted(_factories)


def make_metric(name: str, context: MetricContext | None = None) -> Metric:
    """Build a metric by name (``ndcg@10`` looks up ``ndcg``).

    Raises:
        AppkitError: naming the known metrics.
    """
    family = name.split("@", 1)[0]
    if family not in _factories:
        raise AppkitError(f"unknown metric '{name}'; known: {', '.join(metric_names())} "
                          "(retrieval metrics take @k, e.g. ndcg@10)")
    try:
        return _factories[family](context or MetricContext(), name)
    except ValueError as exc:
        raise AppkitError(str(exc)) from exc


def make_metrics(names: Iterable[str], context: MetricContext | None = None) -> list[Metric]:
    return [make_metric(n, context) for n in dict.fromkeys(names)]


def _simple(cls: Callable[[], Metric]) -> MetricFactory:
    return lambda ctx, name: cls()


def _register_builtin() -> None:
    from eval.metrics import alignment, citations, ranx, rouge, sacrebleu, squad
    from eval.metrics import ragas as ragas_metrics

    register_metric("exact_match", _simple(squad.ExactMatch))
    register_metric("token_f1", _simple(squad.TokenF1))
    for variant in rouge.VARIANTS:
        register_metric(variant, lambda ctx, name: rouge.RougeMetric(name))
    register_metric("bleu", _simple(sacrebleu.BleuMetric))
    register_metric("chrf", _simple(sacrebleu.ChrfMetric))
    register_metric("citation_correctness", _simple(citations.CitationCorrectness))
    register_metric("has_citation", _simple(citations.HasCitation))
    register_metric("correct_refusal", _simple(alignment.CorrectRefusal))
    register_metric("harmful_refusal", _simple(alignment.HarmfulRefusal))
    register_metric("grounded_answer", _simple(alignment.GroundedAnswer))

    def rewarded(ctx: MetricContext, name: str) -> Metric:
        reward = ctx.reward() if ctx.reward else None
        if reward is None:
            raise ValueError("reward_score needs a reward model: set chat.reward_model in the "
                             "profile (train one with 'appkit align reward')")
        return alignment.RewardScore(reward)

    register_metric("reward_score", rewarded)
    register_metric("non_llm_context_precision", _simple(ragas_metrics.NonLLMContextPrecision))
    register_metric("non_llm_context_recall", _simple(ragas_metrics.NonLLMContextRecall))
    for family in ranx.FAMILIES:
        register_metric(family, lambda ctx, name: ranx.RanxMetric(name))

    def judged(ctx: MetricContext, name: str) -> Metric:
        judge = ctx.judge() if ctx.judge else None
        embeddings = ctx.embeddings() if (ctx.embeddings and name == "answer_relevancy") else None
        return ragas_metrics.RagasJudgeMetric(name, judge, embeddings=embeddings)

    for name in ragas_metrics.JUDGED_METRICS:
        register_metric(name, judged)


_register_builtin()

# Cheap metrics computed on every run (each applies only where the test case has what it needs).
DEFAULT_METRICS = (
    "exact_match", "token_f1", "rougeL", "bleu", "chrf", "has_citation", "citation_correctness",
    "non_llm_context_precision", "non_llm_context_recall", "hit_rate@5", "mrr", "ndcg@5", "recall@5",
)
# Alignment (docs/align.md): refusals where due, grounded answers, the reward model's score.
ALIGNMENT_METRICS = ("correct_refusal", "harmful_refusal", "grounded_answer", "reward_score")
# Metrics that need the LLM judge (slow on CPU: run when asked for, or when the gate names them).
JUDGE_METRICS = ("faithfulness", "answer_relevancy", "context_precision", "context_recall")
