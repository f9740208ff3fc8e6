"""The LLM-judge rubric of write and code, with a fake judge: grades, reasons, per-case failures,
and the wiring into the task metrics."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest

pytest.importorskip("ragas")

from appkit.config import TasksConfig  # noqa: E402
from appkit.tasks import TaskContext  # noqa: E402
from appkit.testing import FakeChatModel  # noqa: E402
from eval.metrics.base import Sample  # noqa: E402
from eval.metrics.rubric import RubricMetric, rubric_for  # noqa: E402
from eval.tasks import evaluate_task, score_task  # noqa: E402
from tests.eval.fakes import FakeJudge, FakeRagasLLM  # noqa: E402


class RubricLLM(FakeRagasLLM):
    """Grades 5 when the response holds every word of the brief's quoted phrase, else 2;
    ``GARBAGE`` and ``SLOW`` as in :class:`FakeRagasLLM`; records the prompts it saw."""

    def __init__(self) -> None:
        super().__init__()
        self.prompts: list[str] = []

    async def agenerate(self, prompt: str, response_model: Any) -> Any:
        if "SLOW" in prompt or "GARBAGE" in prompt:
            return await super().agenerate(prompt, response_model)
        self.calls += 1
        self.prompts.append(prompt)
        brief = prompt.split("Task:\n", 1)[1].split("\n\n", 1)[0]
        response = prompt.split("Response to grade:\n", 1)[1].rsplit("\n\nGive", 1)[0]
        wanted = set(re.findall(r"'([^']*)'", brief)[0].lower().split()) if "'" in brief else set()
        ok = wanted <= set(response.lower().replace(".", "").split())
        return response_model(reason="mentions the phrase" if ok else "misses the phrase",
                              value="5" if ok else "2")


class RubricJudge(FakeJudge):
    def __init__(self, timeout: float = 5.0) -> None:
        super().__init__(timeout=timeout)
        self.llm = RubricLLM()


BRIEF = "Write one sentence with 'office closed'."


def test_grades_on_zero_to_one_with_the_judges_reason() -> None:
    judge = RubricJudge()
    scores = RubricMetric(judge).score_many([
        Sample(BRIEF, "The office closed early."),
        Sample(BRIEF, "We are open."),
        Sample(BRIEF, ""),
    ])
    assert [s.value for s in scores[:2]] == [1.0, 0.25]
    assert scores[0].reason == "grade 5/5: mentions the phrase"
    assert scores[2].status == "n/a" and scores[2].reason == "no answer"
    assert judge.llm.calls == 2
    prompt = judge.llm.prompts[0]
    assert rubric_for("write") in prompt and "(none)" in prompt  # no reference given


def test_code_has_its_own_rubric_and_sees_the_reference() -> None:
    judge = RubricJudge()
    RubricMetric(judge, task="code").score_many([
        Sample("Write add(a, b) for 'return'.", "def add(a, b):\n    return a + b\n",
               reference="def add(a, b): return a + b")])
    prompt = judge.llm.prompts[0]
    assert rubric_for("code") in prompt and "def add(a, b): return a + b" in prompt


def test_each_failure_is_recorded_with_its_reason_never_a_silent_nan() -> None:
    judge = RubricJudge(timeout=0.05)
    scores = RubricMetric(judge).score_many([
        Sample(BRIEF, "GARBAGE"), Sample(BRIEF, "SLOW"), Sample(BRIEF, "The office closed.")])
    assert math.isnan(scores[0].value) and "ValidationError" in scores[0].reason
    assert math.isnan(scores[1].value) and scores[1].reason.startswith("judge timed out")
    assert scores[2].value == 1.0
    assert [s.to_dict()["status"] for s in scores] == ["error", "error", "ok"]

    class Broken(FakeJudge):
        def ragas_llm(self):  # noqa: ANN202
            raise RuntimeError("server exited (code 1)")

    failed = RubricMetric(Broken()).score_many([Sample(BRIEF, "x")])
    assert failed[0].status == "error" and "server exited" in failed[0].reason
    assert RubricMetric(None).score_many([Sample(BRIEF, "x")])[0].reason == (
        "judge unavailable: ValueError: rubric needs a judge model")


def test_rubric_is_the_default_metric_of_write_with_a_judge() -> None:
    inputs, preds = [BRIEF, BRIEF], ["The office closed.", "Open."]
    assert score_task("write", preds, ["", ""]) == {}  # no judge: left out, not zero
    assert score_task("write", preds, ["", ""], inputs=inputs,
                      judge=RubricJudge()) == {"rubric": 0.625}


def test_evaluate_write_and_code_record_each_grade() -> None:
    rows = [{"input": BRIEF, "reference": "The office is closed."},
            {"input": "Write 'x' SLOW", "reference": ""}]
    llm = FakeChatModel(replies=["The office closed on Monday.", "x"])
    report = evaluate_task("write", rows, TaskContext(llm, TasksConfig()),
                           judge=RubricJudge(timeout=0.05))
    assert report.metrics == {"rubric": 1.0}
    assert report.rows[0]["rubric"] == {"value": 1.0, "status": "ok",
                                        "reason": "grade 5/5: mentions the phrase"}
    assert report.rows[1]["rubric"]["status"] == "error"
    assert report.extra["rubric"] == {"judge": "fake-judge", "caveat": "fake judge",
                                      "scored": 1, "failed": 1, "n/a": 0}

    code = [{"input": "Write add(a, b) using 'return'.",
             "tests": "from solution import add\nassert add(1, 2) == 3\n"}]
    llm = FakeChatModel(replies=["```python\ndef add(a, b):\n    return a + b\n```"])
    report = evaluate_task("code", code, TaskContext(llm, TasksConfig()), judge=RubricJudge())
    assert report.metrics == {"tests_pass": 1.0, "rubric": 1.0}
    assert report.rows[0]["prediction"]["code"].startswith("def add")


def test_grades_are_cached_by_the_judges_disk_cache(tmp_path) -> None:
    from ragas.cache import DiskCacheBackend, cacher

    judge = RubricJudge()
    llm = judge.llm
    llm.agenerate = cacher(cache_backend=DiskCacheBackend(str(tmp_path)))(llm.agenerate)
    first = RubricMetric(judge).score_many([Sample(BRIEF, "The office closed.")])
    again = RubricMetric(judge).score_many([Sample(BRIEF, "The office closed.")])
    assert first == again and first[0].value == 1.0
    assert llm.calls == 1  # the second grade came from the cache


def test_compare_table_lists_the_ungraded_cases(capsys) -> None:
    from eval.tasks_cli import print_table

    print_table([{"model": "m", "rubric": 0.5, "rubric_failed": 1,
                  "rubric_errors": ["'Write x': judge timed out after 5s"]}])
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["model", "rubric", "rubric_failed"]
    assert "m: rubric not graded for 'Write x': judge timed out after 5s" in out
