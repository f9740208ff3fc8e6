"""Judge metrics through ragas with a fake judge: verdicts, garbage and timeouts per case, and the
judge's agreement with hand labels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("ragas")

from eval.judge import JUDGE_PREFERENCE, Judge, default_judge_name  # noqa: E402
from eval.judge_check import agreement_from_scores, check_judge, load_labels  # noqa: E402
from eval.metrics import MetricContext, make_metric  # noqa: E402
from eval.metrics.base import Sample, Score  # noqa: E402
from tests.eval.fakes import FakeJudge  # noqa: E402

CONTEXT = ("The beta budget is forty thousand euros for the third quarter.",)


def faithfulness(judge: FakeJudge):  # noqa: ANN201
    return make_metric("faithfulness", MetricContext(judge=lambda: judge))


def test_faithful_and_unfaithful_answers() -> None:
    judge = FakeJudge()
    scores = faithfulness(judge).score_many([
        Sample("Budget?", "The beta budget is forty thousand euros", contexts=CONTEXT),
        Sample("Budget?", "The beta budget is ninety dollars", contexts=CONTEXT),
    ])
    assert [s.value for s in scores] == [1.0, 0.0]
    assert judge.llm.calls == 4  # two per case: statements, then verdicts


def test_garbage_and_timeouts_fail_one_case_with_a_reason_not_the_run() -> None:
    judge = FakeJudge(timeout=0.05)
    scores = faithfulness(judge).score_many([
        Sample("Budget?", "GARBAGE answer", contexts=CONTEXT),
        Sample("Budget?", "SLOW answer", contexts=CONTEXT),
        Sample("Budget?", "The beta budget is forty thousand euros", contexts=CONTEXT),
        Sample("Budget?", "no context given"),
    ])
    assert math.isnan(scores[0].value) and "ValidationError" in scores[0].reason
    assert math.isnan(scores[1].value) and scores[1].reason.startswith("judge timed out")
    assert scores[2].value == 1.0
    assert scores[3].status == "n/a" and scores[3].reason == "no retrieved context"
    assert [s.to_dict()["value"] for s in scores] == [None, None, 1.0, None]  # JSON-safe


def test_a_judge_that_cannot_start_fails_every_case_with_the_reason() -> None:
    class Broken(FakeJudge):
        def ragas_llm(self):  # noqa: ANN202
            raise RuntimeError("server exited (code 1)")

    scores = faithfulness(Broken()).score_many([Sample("q", "a", contexts=CONTEXT)] * 2)
    assert all(s.status == "error" and "server exited" in s.reason for s in scores)


def test_agreement_rates() -> None:
    labels = [{"id": str(i), "label": lab} for i, lab in
              enumerate(["faithful", "faithful", "faithful", "unfaithful", "unfaithful"])]
    scores = [Score(1.0), Score(0.2), Score.failed("timeout"), Score(0.0), Score(0.6)]
    a = agreement_from_scores("j", labels, scores)
    assert (a.tpr, a.tnr, a.positives, a.negatives, a.failed) == (0.5, 0.5, 2, 2, 1)
    assert "TPR 0.50 on 2 faithful" in a.line() and "1 not scored" in a.line()


def test_check_judge_on_the_shipped_labels_is_cached(tmp_path: Path) -> None:
    labels = load_labels()
    assert len(labels) >= 20 and {lab["label"] for lab in labels} == {"faithful", "unfaithful"}
    judge = FakeJudge()
    first = check_judge(judge, cache_dir=tmp_path, limit=3)
    assert first.positives + first.negatives + first.failed == 6
    assert first.tnr == 1.0  # the fake rejects every invented fact
    calls = judge.llm.calls
    again = check_judge(judge, cache_dir=tmp_path, limit=3)
    assert judge.llm.calls == calls and again.to_dict() == first.to_dict()


def test_default_judge_is_the_best_installed_model_that_fits() -> None:
    name = default_judge_name()
    assert name in JUDGE_PREFERENCE
    # with little memory the Qwen models do not fit and the tiny model is chosen
    assert default_judge_name(memory=1 << 30) == "smollm2-135m"


def test_endpoint_judges_start_nothing() -> None:
    judge = Judge("http://127.0.0.1:9/v1#big", cache_dir=None)
    assert judge.is_endpoint and judge.base_url_and_model() == ("http://127.0.0.1:9/v1", "big")
    assert judge.caveat == ""
    assert Judge("smollm2-135m").caveat  # tiny local judges carry the caveat


def test_labels_file_is_well_formed() -> None:
    for lab in load_labels():
        assert set(lab) == {"id", "label", "question", "contexts", "answer"}, json.dumps(lab)
