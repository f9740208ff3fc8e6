"""How far to trust a judge: its agreement with hand-labelled faithful and unfaithful answers.

``eval/data/judge_validation.jsonl`` holds short question / context / answer triples written by
hand, half of them faithful to the context and half not (a wrong number, an invented fact, a
contradiction). The judge scores each with ragas faithfulness; a score of 0.5 or more counts as
"faithful". The true positive rate (faithful answers it accepts) and true negative rate
(unfaithful answers it rejects) are shown next to the judge's scores in every run. A case the judge
fails on (timeout, unusable output) is counted apart, not as a verdict.

Results are cached per judge and label file, so a run pays for this once per judge.

Example:
    >>> from eval.judge_check import load_labels
    >>> labels = load_labels()
    >>> sorted({l["label"] for l in labels})
    ['faithful', 'unfaithful']
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from eval.metrics.base import Sample

LABELS_FILE = Path(__file__).with_name("data") / "judge_validation.jsonl"
THRESHOLD = 0.5


def load_labels(path: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """The hand-labelled cases: id, label, question, contexts, answer."""
    p = Path(path) if path else LABELS_FILE
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclass
class JudgeAgreement:
    """A judge's agreement with the hand labels.

    Attributes:
        judge: the judge's name.
        tpr: faithful answers scored >= 0.5, over faithful answers scored (None if none).
        tnr: unfaithful answers scored < 0.5, over unfaithful answers scored.
        positives: faithful answers scored.
        negatives: unfaithful answers scored.
        failed: cases the judge could not score.
        cases: per case: id, label, score, reason.
    """

    judge: str
    tpr: float | None
    tnr: float | None
    positives: int
    negatives: int
    failed: int
    cases: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        def pct(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.2f}"

        return (f"judge {self.judge}: TPR {pct(self.tpr)} on {self.positives} faithful, "
                f"TNR {pct(self.tnr)} on {self.negatives} unfaithful hand-labelled answers"
                + (f", {self.failed} not scored" if self.failed else ""))


def agreement_from_scores(judge: str, labels: list[dict[str, Any]], scores: list[Any]
                          ) -> JudgeAgreement:
    """Compute TPR/TNR from faithfulness scores (NaN/None = not scored)."""
    tp = fn = tn = fp = failed = 0
    cases = []
    for lab, s in zip(labels, scores):
        ok = s.status == "ok"
        if not ok:
            failed += 1
        elif lab["label"] == "faithful":
            tp += s.value >= THRESHOLD
            fn += s.value < THRESHOLD
        else:
            tn += s.value < THRESHOLD
            fp += s.value >= THRESHOLD
        cases.append({"id": lab["id"], "label": lab["label"], **s.to_dict()})
    return JudgeAgreement(
        judge=judge, tpr=round(tp / (tp + fn), 3) if tp + fn else None,
        tnr=round(tn / (tn + fp), 3) if tn + fp else None,
        positives=tp + fn, negatives=tn + fp, failed=failed, cases=cases,
    )


def check_judge(judge: Any, *, cache_dir: str | os.PathLike | None = None,
                labels_path: str | os.PathLike | None = None, limit: int | None = None,
                progress: bool = False) -> JudgeAgreement:
    """Score the hand-labelled set with ``judge`` and measure its agreement.

    Args:
        judge: a :class:`~eval.judge.Judge`.
        cache_dir: where the result is cached (per judge and label file); None: not cached.
        labels_path: another label file of the same shape.
        limit: use only the first ``limit`` faithful and ``limit`` unfaithful cases.
        progress: show a progress bar.
    """
    from eval.metrics.ragas import RagasJudgeMetric

    labels = load_labels(labels_path)
    if limit is not None:
        pos = [lab for lab in labels if lab["label"] == "faithful"][:limit]
        neg = [lab for lab in labels if lab["label"] != "faithful"][:limit]
        labels = pos + neg
    digest = hashlib.sha256(json.dumps(labels, sort_keys=True).encode()).hexdigest()[:12]
    cached = None
    if cache_dir is not None:
        slug = hashlib.sha1(judge.name.encode()).hexdigest()[:8]
        cached = Path(cache_dir) / f"agreement-{slug}-{digest}.json"
        if cached.exists():
            try:
                return JudgeAgreement(**json.loads(cached.read_text(encoding="utf-8")))
            except (ValueError, TypeError):
                pass
    samples = [Sample(question=lab["question"], answer=lab["answer"],
                      contexts=tuple(lab["contexts"])) for lab in labels]
    metric = RagasJudgeMetric("faithfulness", judge)
    from tqdm.auto import tqdm

    with tqdm(total=len(samples), desc="judge check", disable=not progress, leave=False) as bar:
        scores = metric.score_many(samples, bar.update)
    result = agreement_from_scores(judge.name, labels, scores)
    if cached is not None and result.failed < len(labels):
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
    return result
