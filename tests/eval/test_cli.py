"""``appkit eval``: run, gate, compare and import from the command line, with fake models."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from appkit.app import App
from appkit.cli import main
from appkit.config import load_profile
from appkit.testing import FakeChatModel, HashingEmbeddings

pytest.importorskip("scipy")

LINES = [
    json.dumps({"id": "budget", "question": "What is the beta budget?",
                "reference": "forty thousand euros"}),
    "{broken",
    json.dumps({"id": "staff", "question": "Who works on beta?",
                "reference": "two engineers and one designer"}),
]


@pytest.fixture
def setup(tmp_path: Path, docs_dir: Path, write_profile: Callable[..., Path],
          monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    profile_path = write_profile({
        "store": {"path": str(tmp_path / "data")},
        "retrieval": {"chunk_size": 200, "chunk_overlap": 20, "min_relevance": 0.0},
        "quality_gate": {"token_f1": ">= 0.5", "has_citation": ">= 0.5"},
    })
    replies = {"budget": "Forty thousand euros [1].", "staff": "Nobody."}
    embeddings = HashingEmbeddings()

    class Replier(FakeChatModel):
        def _next(self, messages):  # noqa: ANN001, ANN202
            self.calls.append(messages)
            return replies["budget" if "budget" in messages[-1].text else "staff"]

    def fake_app(args):  # noqa: ANN001, ANN202
        app = App(load_profile(args.profile), embeddings=embeddings, chat_model=Replier())
        app.ingest([docs_dir])
        return app

    monkeypatch.setattr("eval.cli._app", fake_app)
    testset = tmp_path / "testset.jsonl"
    testset.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    return {"profile": profile_path, "testset": testset, "root": tmp_path, "replies": replies}


def run(*argv: str) -> int:
    return main(["eval", *argv])


def test_bad_lines_stop_the_run_or_are_skipped(setup: dict, capsys: pytest.CaptureFixture) -> None:
    p, t = str(setup["profile"]), str(setup["testset"])
    assert run("run", t, "-p", p, "-q") == 2
    assert "testset.jsonl, line 2: not valid JSON" in capsys.readouterr().err
    out = str(setup["root"] / "run1")
    assert run("run", t, "-p", p, "-q", "--on-error", "skip", "-m", "token_f1,has_citation",
               "-o", out) == 0
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "line 2" in captured.err
    assert "token_f1" in captured.out and f"run written to {out}" in captured.out
    summary = json.loads((Path(out) / "summary.json").read_text())
    assert summary["testset"]["skipped_lines"] == ["line 2: not valid JSON (Expecting property "
                                                   "name enclosed in double quotes at column 2)"]


def test_gate_and_compare(setup: dict, capsys: pytest.CaptureFixture) -> None:
    p, t, root = str(setup["profile"]), str(setup["testset"]), setup["root"]
    args = ["-p", p, "-q", "--on-error", "skip", "-m", "token_f1,has_citation"]
    assert run("run", t, *args, "-o", str(root / "eval-runs" / "a")) == 0
    # token F1: budget 1.0, staff 0.0 -> mean 0.5 passes ">= 0.5"; has_citation 0.5 passes
    assert run("gate", str(root / "eval-runs" / "a"), "-p", p) == 0
    assert "quality gate passed" in capsys.readouterr().out
    setup["replies"]["budget"] = "Ninety dollars."
    assert run("run", t, *args, "--no-cache", "--gate", "-o", str(root / "eval-runs" / "b")) == 1
    out = capsys.readouterr().out
    assert "quality gate FAILED" in out and "FAIL  token_f1 = 0.000" in out
    assert json.loads((root / "eval-runs" / "b" / "gate.json").read_text())["passed"] is False
    # with no run named, the gate reads the newest run next to the profile
    assert run("gate", "-p", p) == 1
    capsys.readouterr()
    assert run("gate", "-p", p, "--json") == 1
    assert json.loads(capsys.readouterr().out)["passed"] is False
    assert run("compare", str(root / "eval-runs" / "a"), str(root / "eval-runs" / "b"), "-p",
               p) == 0
    text = capsys.readouterr().out
    assert "token_f1" in text and "-0.500" in text and "budget" in text


def test_gate_without_thresholds_is_a_user_error(tmp_path: Path, write_profile,  # noqa: ANN001
                                                 capsys: pytest.CaptureFixture) -> None:
    p = write_profile({"store": {"path": str(tmp_path / "d")}})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "summary.json").write_text('{"metrics": {}}', encoding="utf-8")
    (tmp_path / "run" / "cases.jsonl").write_text("", encoding="utf-8")
    assert run("gate", str(tmp_path / "run"), "-p", str(p)) == 2
    assert "has no [quality_gate]" in capsys.readouterr().err
    assert run("gate", "-p", str(p)) == 2  # no run at all


def test_import_and_help(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps({"data": [{"title": "T", "paragraphs": [{"context": "c", "qas": [
        {"id": "1", "question": "q?", "answers": [{"text": "a"}]}]}]}]}), encoding="utf-8")
    out = tmp_path / "t.jsonl"
    assert run("import", str(squad), "-f", "squad", "-o", str(out)) == 0
    assert json.loads(out.read_text())["relevant_ids"] == ["T/p000"]
    assert run("import", str(tmp_path / "missing.json"), "-f", "squad", "-o", str(out)) == 2
    assert run() == 0 and "judge-check" in capsys.readouterr().out
