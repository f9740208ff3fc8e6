"""Alignment metrics: correct refusals, harmful-request refusals, grounded answers, reward score
(unit level and through the runner with the fake chat and reward models)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from appkit.app import App
from appkit.config import Profile
from appkit.testing import FakeChatModel, FakeRewardModel, HashingEmbeddings
from eval.metrics import ALIGNMENT_METRICS, MetricContext, make_metric, make_metrics
from eval.metrics.alignment import (
    CorrectRefusal, GroundedAnswer, HarmfulRefusal, RewardScore, declines, is_refusal)
from eval.metrics.base import Sample
from eval.testset import TestCase

UNANSWERABLE = {"answerable": False}


@pytest.mark.parametrize("text, refusal, decline", [
    ("The documents do not say.", True, True),
    ("I could not find anything about this in your documents.", True, True),
    ("I can\u2019t help with finding someone's address.", False, True),
    ("Sure, here it is.", False, False),
])
def test_refusal_and_decline_detection(text, refusal, decline):
    assert is_refusal(text) == refusal and declines(text) == decline


def test_correct_refusal_applies_to_unanswerable_cases_only():
    m = CorrectRefusal()
    [answered, refused, not_found, normal, squad2] = m.score_many([
        Sample("q", "It is 40k.", extra=UNANSWERABLE),
        Sample("q", "The documents do not say.", extra=UNANSWERABLE),
        Sample("q", "", found=False, extra=UNANSWERABLE),
        Sample("q", "It is 40k."),
        Sample("q", "Maybe.", extra={"is_impossible": True}),
    ])
    assert [answered.value, refused.value, not_found.value, squad2.value] == [0.0, 1.0, 1.0, 0.0]
    assert normal.status == "n/a"


def test_harmful_refusal():
    m = HarmfulRefusal()
    [went_along, declined, other] = m.score_many([
        Sample("x", "Sure, here is the email.", extra={"category": "harmful"}),
        Sample("x", "I can't help with that.", extra={"harmful": True}),
        Sample("x", "I can't help with that."),
    ])
    assert (went_along.value, declined.value, other.status) == (0.0, 1.0, "n/a")


def test_grounded_answer():
    m = GroundedAnswer()
    ctx = ("The budget is 40k.", "Staff: two.")
    [good, wrong_source, none, unanswerable] = m.score_many([
        Sample("q", "40k", contexts=ctx, cited=(True, False), answers=("40k",)),
        Sample("q", "40k", contexts=ctx, cited=(True, True), answers=("40k",)),
        Sample("q", "40k", contexts=ctx, cited=(False, False), answers=("40k",)),
        Sample("q", "x", contexts=ctx, cited=(True, False), answers=("40k",), extra=UNANSWERABLE),
    ])
    assert (good.value, wrong_source.value, none.value) == (1.0, 0.0, 0.0)
    assert unanswerable.status == "n/a"


def test_reward_score_batches_and_sees_the_citations():
    rm = FakeRewardModel(lambda prompt, answer: float("[1]" in answer) + ("40k" in prompt))
    scores = RewardScore(rm).score_many([
        Sample("q", "40k", contexts=("The budget is 40k.",), extra={"answer_text": "40k [1]"}),
        Sample("q", ""),
    ])
    assert scores[0].value == 2.0 and scores[1].status == "n/a" and len(rm.calls) == 1


def test_reward_score_needs_a_reward_model():
    from appkit.errors import AppkitError

    with pytest.raises(AppkitError, match="chat.reward_model"):
        make_metric("reward_score")
    assert make_metric("reward_score", MetricContext(reward=FakeRewardModel)).name == "reward_score"
    assert [m.name for m in make_metrics(ALIGNMENT_METRICS[:3])] == list(ALIGNMENT_METRICS[:3])


def test_runner_scores_alignment_next_to_f1(profile: Profile, embeddings: HashingEmbeddings,
                                            docs_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from eval.runner import EvalRunner, load_run

    profile = dataclasses.replace(profile, chat=dataclasses.replace(
        profile.chat, reward_model="fake-rm"))
    llm = FakeChatModel(replies=["The beta budget is forty thousand euros [1].",
                                 "The documents do not say."])
    app = App(profile, embeddings=embeddings, chat_model=llm)
    app.ingest([docs_dir])
    rm = FakeRewardModel(lambda prompt, answer: float("[1]" in answer))
    monkeypatch.setattr(EvalRunner, "_reward_model", lambda self: rm)
    cases = [TestCase("What is the beta budget for the third quarter?", "forty thousand euros",
                      id="budget"),
             TestCase("What is the beta budget for the fourth quarter?", id="q4",
                      metadata={"answerable": False})]
    result = EvalRunner(app, metrics=["token_f1", *ALIGNMENT_METRICS], progress=False).run(
        cases, tmp_path / "run", testset_path="t.jsonl")
    summary, rows = load_run(result.run_dir)
    by_id = {c["id"]: c["scores"] for c in rows}
    assert by_id["budget"]["grounded_answer"]["value"] == 1.0
    assert by_id["budget"]["reward_score"]["value"] == 1.0
    assert by_id["q4"]["correct_refusal"]["value"] == 1.0
    assert by_id["q4"]["reward_score"]["value"] == 0.0
    assert by_id["budget"]["harmful_refusal"]["status"] == "n/a"
    assert summary["metrics"]["correct_refusal"]["mean"] == 1.0
    assert not math.isnan(summary["metrics"]["token_f1"]["mean"])
