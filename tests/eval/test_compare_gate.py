"""Comparing runs (bootstrap intervals) and the quality gate."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("scipy")

from appkit.errors import ConfigError  # noqa: E402
from eval.compare import compare_runs, paired_delta, render_comparison  # noqa: E402
from eval.gate import check_gate  # noqa: E402
from eval.metrics.base import Score  # noqa: E402
from eval.runner import summarize, write_run  # noqa: E402


def fake_run(folder: Path, values: dict[str, list[float | None]]) -> Path:
    n = len(next(iter(values.values())))
    records = []
    for i in range(n):
        scores = {}
        for name, col in values.items():
            v = col[i]
            scores[name] = (Score.na("no reference") if v is None else Score(v)).to_dict()
        records.append({"id": f"q{i}", "question": f"question {i}", "answer": f"answer {i}",
                        "contexts": [], "scores": scores, "wall_s": 0.1})
    summary = summarize(records, list(values))
    summary.update({"testset": {"cases": n}, "timing": {}, "app": {}})
    write_run(folder, records, summary)
    return folder


def test_paired_delta_interval() -> None:
    same = paired_delta([0.2, 0.4], [0.3, 0.5])
    assert same["delta"] == pytest.approx(0.1) and same["ci"] == pytest.approx([0.1, 0.1])
    noisy = paired_delta([0.0, 1.0, 0.0, 1.0, 0.5] * 4, [0.2, 0.9, 0.3, 1.0, 0.6] * 4, seed=1)
    lo, hi = noisy["ci"]
    assert lo <= noisy["delta"] <= hi and lo > 0
    assert noisy == paired_delta([0.0, 1.0, 0.0, 1.0, 0.5] * 4, [0.2, 0.9, 0.3, 1.0, 0.6] * 4,
                                 seed=1)  # seeded: reproducible
    assert paired_delta([], [])["delta"] is None


def test_compare_runs(tmp_path: Path) -> None:
    a = fake_run(tmp_path / "a", {"token_f1": [0.1, 0.5, 0.9, 0.4] * 5,
                                  "faithfulness": [1.0, None, 0.5, 1.0] * 5})
    b = fake_run(tmp_path / "b", {"token_f1": [0.9, 0.5, 0.9, 0.5] * 5,
                                  "faithfulness": [1.0, None, 0.5, 1.0] * 5})
    result = compare_runs(a, b, top=3)
    f1 = result["metrics"]["token_f1"]
    assert f1["delta"] == pytest.approx((0.8 + 0.1) / 4) and f1["n"] == 20 and f1["significant"]
    faith = result["metrics"]["faithfulness"]
    assert faith["n"] == 15 and faith["delta"] == 0 and not faith["significant"]
    assert [c["id"] for c in result["changed"]][:1] == ["q0"]
    assert result["changed"][0]["deltas"] == {"token_f1": 0.8}
    text = render_comparison(result)
    assert "token_f1" in text and "+0.225" in text and "Cases that changed most" in text


GATE_SUMMARY = {"testset": {"cases": 10}, "metrics": {
    "faithfulness": {"mean": 0.72, "scored": 8, "failed": 2, "not_applicable": 0},
    "token_f1": {"mean": 0.41, "scored": 10, "failed": 0, "not_applicable": 0},
    "context_recall": {"mean": None, "scored": 0, "failed": 10, "not_applicable": 0},
    "mrr": {"mean": 0.9, "scored": 2, "failed": 6, "not_applicable": 2},
}}


def test_gate_passes_and_fails_per_condition() -> None:
    ok = check_gate({"faithfulness": ">= 0.7"}, GATE_SUMMARY)
    assert ok.passed and "PASS  faithfulness = 0.720" in ok.render()
    bad = check_gate({"faithfulness": ">= 0.7", "token_f1": "> 0.5"}, GATE_SUMMARY)
    assert not bad.passed
    assert [c.passed for c in bad.checks] == [True, False]
    assert "quality gate FAILED" in bad.render()


def test_missing_or_unscored_metrics_fail_the_gate() -> None:
    result = check_gate({"answer_relevancy": ">= 0.5", "context_recall": ">= 0.1",
                         "mrr": ">= 0.5"}, GATE_SUMMARY)
    notes = [c.note for c in result.checks]
    assert not any(c.passed for c in result.checks)
    assert notes[0] == "the run did not compute this metric"
    assert notes[1].startswith("no case could be scored (10 failed")
    assert notes[2].startswith("only 2 of 8 applicable cases scored")
    assert check_gate({"mrr": ">= 0.5"}, GATE_SUMMARY, min_scored=0.2).passed


def test_malformed_conditions_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="quality_gate.token_f1"):
        check_gate({"token_f1": "about 0.5"}, GATE_SUMMARY)
