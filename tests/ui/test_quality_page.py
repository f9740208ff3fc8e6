"""The Quality page: eval runs over time, distributions, worst cases and a side-by-side compare."""

from __future__ import annotations

import json
from pathlib import Path

from tests.ui.conftest import texts


def write_run(root: Path, name: str, created: str, f1: list[float]) -> None:
    run = root / name
    run.mkdir(parents=True)
    cases = [{"id": f"q{i}", "question": f"Question {i}?", "answer": f"answer {i} of {name}",
              "reference": f"ref {i}", "scores": {"token_f1": {"value": v, "status": "ok"},
                                                  "faithfulness": {"value": None,
                                                                   "status": "n/a"}}}
             for i, v in enumerate(f1)]
    (run / "cases.jsonl").write_text("\n".join(json.dumps(c) for c in cases) + "\n{broken\n")
    (run / "summary.json").write_text(json.dumps({
        "created": created, "app": {"chat_model": "qwen2.5-coder-0.5b"},
        "metrics": {"token_f1": {"mean": sum(f1) / len(f1), "scored": len(f1)},
                    "citation_precision": 0.5}}))


def test_no_runs_yet(open_page) -> None:
    assert "No evaluation runs yet" in texts(open_page("quality"))


def test_runs_charts_worst_cases_and_compare(open_page, ui_profile) -> None:
    root = ui_profile.parent / "eval-runs"
    write_run(root, "20261101-base", "2026-11-01T10:00:00", [0.2, 0.9, 0.5])
    write_run(root, "20261102-tuned", "2026-11-02T10:00:00", [0.8, 0.9, 0.6])
    (root / "not-a-run").mkdir()
    at = open_page("quality")
    page = texts(at)
    assert "Latest run · 20261102-tuned" in page
    metrics = {m.label: m for m in at.metric}
    assert metrics["token_f1"].value == "0.767" and metrics["citation_precision"].value == "0.500"
    assert "0.2" in str(metrics["token_f1"].delta)
    assert len(at.get("vega_lite_chart")) == 2  # over runs, distribution
    worst = at.selectbox(key="worst-run")
    worst.set_value(worst.options[-1]).run()  # the oldest run
    assert "**0.200** · Question 0?" in texts(at)
    compare = at.dataframe[0].value
    assert round(compare.set_index("metric").loc["token_f1", "change"], 3) == 0.233
    cases = at.dataframe[1].value
    assert cases.iloc[0]["id"] == "q0" and round(cases.iloc[0]["delta"], 2) == 0.6
