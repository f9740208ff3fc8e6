"""The runner with fake models: answers through the app's chain, scores, caches, writes a run."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest

from appkit.app import App
from appkit.config import PromptConfig, Profile
from appkit.testing import FakeChatModel, HashingEmbeddings
from eval.runner import EvalRunner, default_metric_names, load_run, strip_citations
from eval.testset import TestCase

pytest.importorskip("rouge_score")

CASES = [
    TestCase("What is the beta budget for the third quarter?", "forty thousand euros",
             relevant_ids=("beta",), id="budget"),
    TestCase("How often does the alpha sensor read humidity?", "every minute",
             relevant_ids=("alpha",), id="sensor"),
    TestCase("Who works on beta full time?", "two engineers and one designer", id="staff"),
]
REPLIES = ["The beta budget is forty thousand euros [1].",
           "It reads humidity every hour.",
           "Two engineers and one designer [1]."]
METRICS = ["exact_match", "token_f1", "has_citation", "citation_correctness"]


class ExplodingChatModel(FakeChatModel):
    """Fails on questions that mention the sensor."""

    def _next(self, messages):  # noqa: ANN001, ANN202
        if "sensor" in messages[-1].text:
            raise RuntimeError("model crashed")
        return super()._next(messages)


@pytest.fixture
def app(profile: Profile, embeddings: HashingEmbeddings, docs_dir: Path) -> App:
    app = App(profile, embeddings=embeddings, chat_model=FakeChatModel(replies=list(REPLIES)))
    app.ingest([docs_dir])
    return app


def test_strip_citations() -> None:
    assert strip_citations("It is 40k [1][2]. Also [3] x.") == "It is 40k. Also x."


def test_run_scores_every_case_and_writes_the_run_directory(app: App, tmp_path: Path) -> None:
    result = EvalRunner(app, metrics=METRICS, progress=False).run(
        CASES, tmp_path / "run", testset_path="t.jsonl")
    run = result.run_dir
    assert sorted(p.name for p in run.iterdir()) == ["cases.jsonl", "report.html", "summary.json"]
    summary, cases = load_run(run)
    by_id = {c["id"]: c for c in cases}
    budget = by_id["budget"]
    assert budget["answer"] == REPLIES[0] and budget["contexts"]
    assert budget["contexts"][0]["cited"] and "forty thousand" in budget["contexts"][0]["text"]
    assert budget["retrieved"][0]["id"] == budget["contexts"][0]["chunk_id"]
    assert budget["scores"]["citation_correctness"]["value"] == 1.0
    assert by_id["sensor"]["scores"]["has_citation"]["value"] == 0.0
    assert by_id["sensor"]["scores"]["citation_correctness"] == {
        "value": None, "status": "n/a", "reason": "the answer cites no source"}
    # token F1 by hand: "it reads humidity every hour" vs "every minute": 1 shared token,
    # P 1/5, R 1/2 -> 2/7; "two engineers and one designer" is exact
    f1 = {c["id"]: c["scores"]["token_f1"]["value"] for c in cases}
    assert f1["sensor"] == pytest.approx(2 / 7)
    assert f1["staff"] == 1.0
    m = summary["metrics"]["token_f1"]
    assert m["scored"] == 3 and m["mean"] == pytest.approx(round((f1["budget"] + 2 / 7 + 1) / 3, 4))
    assert summary["testset"]["cases"] == 3 and summary["timing"]["generated"] == 3
    assert "judge" not in summary
    html = (run / "report.html").read_text(encoding="utf-8")
    # worst first by token F1: the sensor case comes before the staff case
    assert html.index("alpha sensor") < html.index("Who works on beta")
    assert "data:image/png;base64," in html and "<table>" in html


def test_re_running_unchanged_cases_costs_nothing(app: App, tmp_path: Path) -> None:
    EvalRunner(app, metrics=METRICS, progress=False).run(CASES, tmp_path / "a")
    llm = app.chat_model
    calls = len(llm.calls)
    again = EvalRunner(app, metrics=METRICS, progress=False).run(CASES, tmp_path / "b")
    assert len(llm.calls) == calls
    assert again.summary["timing"]["cached"] == 3
    assert [c["answer"] for c in again.cases] == REPLIES
    fresh = EvalRunner(app, metrics=METRICS, progress=False, use_cache=False).run(
        CASES[:1], tmp_path / "c")
    assert len(llm.calls) == calls + 1 and fresh.summary["timing"]["generated"] == 1


def test_a_profile_change_invalidates_the_cache(app: App, profile: Profile,
                                                tmp_path: Path) -> None:
    EvalRunner(app, metrics=METRICS, progress=False).run(CASES[:1], tmp_path / "a")
    changed = dataclasses.replace(profile, prompt=dataclasses.replace(
        PromptConfig(), system="Answer tersely from the numbered sources."))
    llm = FakeChatModel(replies=["40k [1]"])
    other = App(changed, embeddings=app.embeddings, chat_model=llm)
    result = EvalRunner(other, metrics=METRICS, progress=False).run(CASES[:1], tmp_path / "b")
    assert len(llm.calls) == 1 and result.cases[0]["answer"] == "40k [1]"


def test_an_app_failure_fails_that_case_only(profile: Profile, embeddings: HashingEmbeddings,
                                             docs_dir: Path, tmp_path: Path) -> None:
    app = App(profile, embeddings=embeddings,
              chat_model=ExplodingChatModel(replies=[REPLIES[0], REPLIES[2]]))
    app.ingest([docs_dir])
    result = EvalRunner(app, metrics=METRICS, progress=False).run(CASES, tmp_path / "run")
    by_id = {c["id"]: c for c in result.cases}
    assert by_id["sensor"]["error"] == "RuntimeError: model crashed"
    assert by_id["sensor"]["scores"]["token_f1"] == {
        "value": None, "status": "error", "reason": "the app failed: RuntimeError: model crashed"}
    assert by_id["staff"]["scores"]["token_f1"]["value"] == 1.0
    assert result.summary["metrics"]["token_f1"]["failed"] == 1
    assert result.summary["timing"]["app_failures"] == 1
    # failures are not cached: the next run tries the case again
    assert EvalRunner(app, metrics=METRICS, progress=False).run(
        CASES[1:2], tmp_path / "again").summary["timing"]["generated"] == 1


def test_judge_metrics_with_a_fake_judge(app: App, tmp_path: Path) -> None:
    pytest.importorskip("ragas")
    from tests.eval.fakes import FakeJudge

    judge = FakeJudge()
    result = EvalRunner(app, metrics=["faithfulness"], judge=judge, progress=False,
                        judge_check=True).run(CASES, tmp_path / "run")
    scores = [c["scores"]["faithfulness"] for c in result.cases]
    assert all(s["status"] == "ok" for s in scores)
    assert scores[0]["value"] == 1.0  # "the beta budget is forty thousand euros" is in the chunk
    assert scores[1]["value"] == 0.0  # "every hour" is not
    judged = result.summary["judge"]
    assert judged["name"] == "fake-judge" and judged["caveat"] == "fake judge"
    assert judged["agreement"]["tnr"] == 1.0
    assert not judge.closed  # a judge passed in belongs to the caller


def test_nothing_relevant_found(profile: Profile, embeddings: HashingEmbeddings,
                                tmp_path: Path) -> None:
    app = App(profile, embeddings=embeddings, chat_model=FakeChatModel())
    result = EvalRunner(app, metrics=METRICS + ["mrr"], progress=False).run(
        CASES[:1], tmp_path / "run")
    case = result.cases[0]
    assert case["found"] is False and case["contexts"] == []
    assert case["scores"]["mrr"] == {"value": 0.0, "status": "ok", "reason": "nothing retrieved"}
    assert case["scores"]["has_citation"]["status"] == "n/a"
    assert not math.isnan(case["scores"]["token_f1"]["value"])


def test_default_metrics_add_the_judge_metrics_the_gate_names() -> None:
    names = default_metric_names(Profile(quality_gate={"faithfulness": ">= 0.7",
                                                       "token_f1": ">= 0.5"}))
    assert "faithfulness" in names and "answer_relevancy" not in names
    assert "token_f1" in names and "hit_rate@5" in names


def test_load_run_refuses_other_folders(tmp_path: Path) -> None:
    from appkit.errors import AppkitError

    with pytest.raises(AppkitError, match="not an eval run directory"):
        load_run(tmp_path)
    (tmp_path / "summary.json").write_text("{", encoding="utf-8")
    (tmp_path / "cases.jsonl").write_text("", encoding="utf-8")
    with pytest.raises(AppkitError, match="cannot read the run"):
        load_run(tmp_path)
    assert json.loads('{"a": 1}')


def test_settings_that_do_not_shape_answers_keep_the_cache(app: App, profile: Profile,
                                                          tmp_path: Path) -> None:
    EvalRunner(app, metrics=METRICS, progress=False).run(CASES[:1], tmp_path / "a")
    regated = dataclasses.replace(profile, quality_gate={"token_f1": ">= 0.9"})
    llm = FakeChatModel(replies=["never asked"])
    other = App(regated, embeddings=app.embeddings, chat_model=app.chat_model)
    other._chat_model = app.chat_model  # noqa: SLF001 - the same model object
    result = EvalRunner(other, metrics=METRICS, progress=False).run(CASES[:1], tmp_path / "b")
    assert result.summary["timing"]["cached"] == 1 and not llm.calls
