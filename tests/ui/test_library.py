"""The non-Streamlit helpers behind the pages: chat rules, document helpers, the eval-run reader."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from appkit.config import ChatConfig, Profile
from ui.chat import escape_markdown, mark_citations, max_question_chars, truncate_question
from ui.documents import count_files, filter_rows, safe_name, when
from ui.quality import compare_runs, list_runs, load_cases, lower_is_better, worst_cases


def test_truncate_question() -> None:
    assert truncate_question("  short  ") == ("short", False)
    cut, truncated = truncate_question("word " * 100, limit=52)
    assert truncated and len(cut) <= 52 and not cut.endswith(" ")
    assert max_question_chars(Profile(chat=ChatConfig(n_ctx=1024))) == 1024
    assert max_question_chars(Profile()) == 4000


def test_markdown_helpers() -> None:
    assert mark_citations("It costs $40 [1][2].") == "It costs \\$40 :blue-badge[1]:blue-badge[2]."
    assert escape_markdown("# Title *x*") == "\\# Title \\*x\\*"


def test_safe_names_and_counting(tmp_path: Path) -> None:
    assert safe_name("../../etc/passwd.md") == "passwd.md"
    assert safe_name("C:\\Users\\me\\notes (1).txt") == "notes (1).txt"
    assert safe_name("...") == "upload"
    (tmp_path / "a.md").write_text("x")
    (tmp_path / "b.bin").write_text("x")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "c.md").write_text("x")
    assert count_files([tmp_path]) == 1 and count_files([tmp_path / "a.md"]) == 1


def test_filter_rows_and_when() -> None:
    rows = [{"source": "/d/Budget.md", "folder": "/d"}, {"source": "/u/x.txt", "folder": "(uploaded)"}]
    assert filter_rows(rows, "budget") == rows[:1]
    assert filter_rows(rows, "uploaded") == rows[1:]
    now = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
    assert when("2026-11-24T11:59:30+00:00", now) == "just now"
    assert when("2026-11-24T11:30:00+00:00", now) == "30 min ago"
    assert when("2026-11-20T12:00:00+00:00", now) == "20 Nov 2026"
    assert when("") == "–"


def test_run_reader_is_tolerant(tmp_path: Path) -> None:
    run = tmp_path / "r1"
    run.mkdir()
    (run / "summary.json").write_text(json.dumps({"metrics": {"f1": 0.5, "latency_s": {"mean": 2},
                                                             "broken": {"mean": None}}}))
    (run / "cases.jsonl").write_text('{"id": "a", "scores": {"f1": 0.1}}\n[1]\n\n'
                                     '{"question": "b?", "scores": {"f1": {"value": 0.9}}}\n')
    (tmp_path / "empty").mkdir()
    [r] = list_runs([tmp_path, tmp_path / "missing"])
    assert r.metrics == {"f1": 0.5, "latency_s": 2.0} and r.created
    assert list_runs([run])[0].name == "r1"  # a run folder itself
    cases = load_cases(r)
    assert [c["metrics"] for c in cases] == [{"f1": 0.1}, {"f1": 0.9}]
    assert [c["id"] for c in worst_cases(cases, "f1", 1)] == ["a"]
    assert lower_is_better("latency_s") and not lower_is_better("token_f1")
    rows = compare_runs(cases, [{"id": "a", "metrics": {"f1": 0.6}}], "f1")
    assert [(r["id"], round(r["delta"], 2)) for r in rows] == [("a", 0.5)]
