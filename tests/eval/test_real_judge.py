"""Smoke test: ragas metrics with the real local judge (llama-cpp-python's server on 127.0.0.1)
on two cases. Slow: run with ``pytest -m slow``."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from appkit.app import App
from appkit.config import Profile
from appkit.testing import FakeChatModel, HashingEmbeddings
from eval.judge import Judge
from eval.runner import EvalRunner
from eval.testset import TestCase

pytestmark = [pytest.mark.slow, pytest.mark.allow_hosts(["127.0.0.1"]), pytest.mark.timeout(1800)]
pytest.importorskip("ragas")
pytest.importorskip("llama_cpp.server")

JUDGE = "qwen2.5-coder-0.5b"


def test_faithfulness_and_context_recall_with_the_local_judge(
        profile: Profile, embeddings: HashingEmbeddings, docs_dir: Path, tmp_path: Path) -> None:
    app = App(profile, embeddings=embeddings, chat_model=FakeChatModel(replies=[
        "The beta budget is forty thousand euros for the third quarter [1].",
        "The alpha sensor reads humidity every minute [1].",
    ]))
    app.ingest([docs_dir])
    cases = [
        TestCase("What is the beta budget for the third quarter?", "forty thousand euros"),
        TestCase("How often does the alpha sensor read humidity?", "every minute"),
    ]
    runner = EvalRunner(app, metrics=["faithfulness", "context_recall", "token_f1"], judge=JUDGE,
                        judge_check=False, cache_dir=tmp_path / "cache", progress=False)
    result = runner.run(cases, tmp_path / "run")
    assert result.summary["judge"]["name"] == JUDGE and result.summary["judge"]["caveat"]
    for case in result.cases:
        for name in ("faithfulness", "context_recall"):
            score = case["scores"][name]
            # a number in [0, 1], or a failure with its reason: never a silent NaN
            if score["status"] == "ok":
                assert 0.0 <= score["value"] <= 1.0
            else:
                assert score["status"] == "error" and score["reason"], score
    assert result.summary["metrics"]["faithfulness"]["scored"] >= 1
    assert runner._judge._server is None  # noqa: SLF001 - the judge server was stopped

    # judge calls are cached: scoring the same answers again loads no judge model
    judge = Judge(JUDGE, cache_dir=tmp_path / "cache" / "judge")
    again = EvalRunner(app, metrics=["faithfulness"], judge=judge, judge_check=False,
                       cache_dir=tmp_path / "cache", progress=False).run(cases, tmp_path / "run2")
    assert judge._server is not None and judge._server.starts == 0  # noqa: SLF001
    judge.close()
    first = [c["scores"]["faithfulness"].get("value") for c in result.cases]
    second = [c["scores"]["faithfulness"].get("value") for c in again.cases]
    assert [None if v is None or math.isnan(v) else v for v in first] == second
