"""Metrics and evaluation runs for the tasks of :mod:`appkit.tasks`.

The core registry names each task's default metrics; this module resolves the names to functions
over whole runs (``predictions`` and ``references`` in order), built on the field's libraries:
ROUGE through :class:`eval.metrics.rouge.RougeMetric` (rouge-score), corpus BLEU and chrF through
sacrebleu, accuracy and macro-F1 through scikit-learn. Entity-level precision, recall and F1 compare
sets of ``(text, type)`` pairs (exact span match, case-insensitive), for the LLM path and the
encoder tagger alike. ``rubric`` (write, code) is graded by an LLM judge
(:class:`eval.metrics.rubric.RubricMetric`) when one is given.

Example:
    >>> from eval.tasks import score_task
    >>> score_task("classify", ["a", "b", "b"], ["a", "b", "a"])["accuracy"]
    0.6667
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from appkit.errors import AppkitError
from appkit.jsonl import read_jsonl
from appkit.lazy import require

TaskMetric = Callable[[Sequence[Any], Sequence[Any]], float | None]
_task_metrics: dict[str, TaskMetric] = {}


def register_task_metric(name: str, fn: TaskMetric) -> None:
    """Make ``fn(predictions, references)`` available under ``name``."""
    _task_metrics[name] = fn


def task_metric_names() -> list[str]:
    return sorted(_task_metrics)


def _refs(ref: Any) -> tuple[str, ...]:
    return tuple(ref) if isinstance(ref, (list, tuple)) else (str(ref),)


def _rouge(variant: str) -> TaskMetric:
    def score(preds: Sequence[Any], refs: Sequence[Any]) -> float | None:
        from eval.metrics.base import Sample
        from eval.metrics.rouge import RougeMetric

        metric = RougeMetric(variant)
        values = [metric.score(Sample("", str(p or ""), answers=_refs(r))).value
                  for p, r in zip(preds, refs)]
        return statistics.fmean(values) if values else None
    return score


def _corpus(kind: str) -> TaskMetric:
    def score(preds: Sequence[Any], refs: Sequence[Any]) -> float | None:
        if not preds:
            return None
        sacrebleu = require("sacrebleu", extra="eval")
        ref_lists = [_refs(r) for r in refs]
        streams = [[r[i] if i < len(r) else r[0] for r in ref_lists]
                   for i in range(max(len(r) for r in ref_lists))]
        hyps = [str(p or "") for p in preds]
        fn = sacrebleu.corpus_bleu if kind == "bleu" else sacrebleu.corpus_chrf
        return fn(hyps, streams).score / 100
    return score


def _sklearn(name: str) -> TaskMetric:
    def score(preds: Sequence[Any], refs: Sequence[Any]) -> float | None:
        if not preds:
            return None
        metrics = require("sklearn.metrics", extra="tasks", package="scikit-learn")
        y_pred = ["" if p is None else str(p) for p in preds]
        y_true = [str(r) for r in refs]
        if name == "accuracy":
            return float(metrics.accuracy_score(y_true, y_pred))
        return float(metrics.f1_score(y_true, y_pred, average="macro", labels=sorted(set(y_true)),
                                      zero_division=0))
    return score


def entity_set(value: Any) -> set[tuple[str, str]]:
    """``{(text, TYPE)}`` from an extract result (``{"entities": [...]}``) or a list of entities."""
    if isinstance(value, dict):
        value = value.get("entities", [])
    out = set()
    for e in value or ():
        if isinstance(e, dict) and e.get("text"):
            out.add((" ".join(str(e["text"]).lower().split()), str(e.get("type", "")).upper()))
    return out


def entity_counts(preds: Sequence[Any], refs: Sequence[Any]) -> tuple[int, int, int]:
    """True positives, predicted and reference entity counts over a run."""
    tp = n_pred = n_ref = 0
    for p, r in zip(preds, refs):
        ps, rs = entity_set(p), entity_set(r)
        tp += len(ps & rs)
        n_pred += len(ps)
        n_ref += len(rs)
    return tp, n_pred, n_ref


def _entity(which: str) -> TaskMetric:
    def score(preds: Sequence[Any], refs: Sequence[Any]) -> float | None:
        tp, n_pred, n_ref = entity_counts(preds, refs)
        precision = tp / n_pred if n_pred else 0.0
        recall = tp / n_ref if n_ref else 0.0
        if which == "precision":
            return precision
        if which == "recall":
            return recall
        return 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return score


def _parse_rate(preds: Sequence[Any], refs: Sequence[Any]) -> float | None:
    return sum(p is not None for p in preds) / len(preds) if preds else None


def _tests_pass(preds: Sequence[Any], refs: Sequence[Any]) -> float | None:
    runs = [p for p in preds if isinstance(p, dict) and "passed" in p]
    return sum(bool(r["passed"]) for r in runs) / len(runs) if runs else None


for _v in ("rouge1", "rouge2", "rougeL"):
    register_task_metric(_v, _rouge(_v))
register_task_metric("bleu", _corpus("bleu"))
register_task_metric("chrf", _corpus("chrf"))
register_task_metric("accuracy", _sklearn("accuracy"))
register_task_metric("macro_f1", _sklearn("macro_f1"))
register_task_metric("entity_precision", _entity("precision"))
register_task_metric("entity_recall", _entity("recall"))
register_task_metric("entity_f1", _entity("f1"))
register_task_metric("parse_rate", _parse_rate)
register_task_metric("tests_pass", _tests_pass)


def _answer_text(prediction: Any) -> str:
    """The text a judge reads: the code of a ``code`` prediction, else the prediction itself."""
    if isinstance(prediction, dict) and "code" in prediction:
        return str(prediction["code"] or "")
    if isinstance(prediction, dict):
        return json.dumps(prediction, ensure_ascii=False)
    return "" if prediction is None else str(prediction)


def rubric_scores(task: str, inputs: Sequence[str], predictions: Sequence[Any],
                  references: Sequence[Any], judge: Any) -> list[Any]:
    """The LLM-judge rubric grade of each case (:class:`eval.metrics.rubric.RubricMetric`): a
    :class:`~eval.metrics.base.Score` per case, n/a without an answer, NaN with the reason when the
    judge fails on it."""
    from eval.metrics.base import Sample
    from eval.metrics.rubric import RubricMetric

    samples = [Sample(str(i), _answer_text(p), reference=r if isinstance(r, str) else "")
               for i, p, r in zip(inputs, predictions, references)]
    return RubricMetric(judge, task=task).score_many(samples)


def mean_ok(scores: Sequence[Any]) -> float | None:
    """The mean of the scores that are neither n/a nor failed (None when there are none)."""
    values = [s.value for s in scores if s.status == "ok"]
    return round(statistics.fmean(values), 4) if values else None


def score_task(task: str, predictions: Sequence[Any], references: Sequence[Any],
               metrics: Sequence[str] | None = None, *, inputs: Sequence[str] | None = None,
               judge: Any = None) -> dict[str, float | None]:
    """Score a whole run of ``task`` with its default metrics (or ``metrics``), rounded to 4 places.

    ``rubric`` (``write``, ``code``) needs ``inputs`` (the briefs) and a ``judge``
    (:class:`eval.judge.Judge`); without them it is left out. ``faithfulness`` is ``appkit eval``'s.

    Raises:
        AppkitError: for a metric name nobody registered.
    """
    from appkit.tasks import get_task

    names = list(metrics or get_task(task).metrics)
    out: dict[str, float | None] = {}
    for name in names:
        if name == "rubric" and judge is not None and inputs is not None:
            out[name] = mean_ok(rubric_scores(task, inputs, predictions, references, judge))
            continue
        if name in ("rubric", "faithfulness"):
            continue
        if name not in _task_metrics:
            if metrics:
                raise AppkitError(f"unknown task metric '{name}'; known: "
                                  f"{', '.join(task_metric_names())}")
            continue
        value = _task_metrics[name](predictions, references)
        out[name] = None if value is None else round(value, 4)
    return out


# --- evaluation runs -------------------------------------------------------------------------


@dataclass
class TaskEvalReport:
    """One model's run over a task's eval set.

    Attributes:
        task: the task.
        model: the model's name.
        metrics: metric name to value.
        examples: how many examples ran.
        seconds_per_example: mean wall-clock time per example.
        failures: examples whose output did not fit the schema (they score as wrong).
        rows: per example: input start, prediction, reference, seconds, error.
    """

    task: str
    model: str
    metrics: dict[str, float | None]
    examples: int
    seconds_per_example: float
    failures: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_eval_set(path: str | Path) -> list[dict[str, Any]]:
    """Read a task eval set: JSONL, one ``{"input": ..., "reference": ...}`` per line (code rows
    carry ``"tests"`` instead of a reference).

    Raises:
        AppkitError: naming the file and line of a malformed row.
    """
    p = Path(path)
    rows = []
    for no, row in read_jsonl(p, "the eval set"):
        if "input" not in row or not ("reference" in row or "tests" in row):
            raise AppkitError(f"{p}, line {no}: expected an object with 'input' and 'reference'")
        rows.append(row)
    if not rows:
        raise AppkitError(f"the eval set {p} has no rows")
    return rows


def evaluate_task(task: str, rows: Sequence[dict[str, Any]], context: Any, *, model: str = "",
                  metrics: Sequence[str] | None = None, judge: Any = None) -> TaskEvalReport:
    """Run ``task`` on every row with ``context`` (a :class:`appkit.tasks.TaskContext`) and score it.

    An output that does not fit the schema counts as a failure (None prediction), not a crash.
    With a ``judge``, tasks whose metrics include ``rubric`` are graded too: each row gets its
    grade (or the reason it has none) and ``extra["rubric"]`` counts scored and failed cases.
    """
    import dataclasses

    from appkit.tasks import TaskOutputError, get_task, run_task

    preds, refs, out_rows, times = [], [], [], []
    failures = 0
    for row in rows:
        ctx = dataclasses.replace(context, tests=row.get("tests", context.tests))
        start = time.perf_counter()
        error = ""
        try:
            result = run_task(task, row["input"], ctx)
            pred = result.output
            if task == "code":  # tests_pass reads the test run, the rubric the code
                pred = {**(result.details.get("tests") or {}), "code": result.output}
        except TaskOutputError as exc:
            pred, error = None, str(exc)
            failures += 1
        seconds = time.perf_counter() - start
        times.append(seconds)
        preds.append(pred)
        refs.append(row.get("reference", ""))
        out_rows.append({"input": str(row["input"])[:120], "prediction": pred,
                         "reference": row.get("reference"), "seconds": round(seconds, 3),
                         "error": error})
    scores = score_task(task, preds, refs, metrics)
    extra: dict[str, Any] = {}
    if judge is not None and "rubric" in (metrics or get_task(task).metrics):
        graded = rubric_scores(task, [str(r["input"]) for r in rows], preds, refs, judge)
        scores["rubric"] = mean_ok(graded)
        for row, score in zip(out_rows, graded):
            row["rubric"] = score.to_dict()
        extra["rubric"] = {"judge": judge.name, "caveat": getattr(judge, "caveat", ""),
                           **{k: sum(s.status == v for s in graded)
                              for k, v in (("scored", "ok"), ("failed", "error"), ("n/a", "n/a"))}}
    return TaskEvalReport(task=task, model=model, metrics=scores, examples=len(rows),
                          seconds_per_example=round(statistics.fmean(times), 4),
                          failures=failures, rows=out_rows, extra=extra)
