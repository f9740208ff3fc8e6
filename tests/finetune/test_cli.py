"""``appkit finetune``: the commands are registered, and bad input gets an error for people."""

from __future__ import annotations

import json

import pytest

from appkit.cli import main
from tests.finetune.conftest import write_jsonl


def _rows(n: int, groups: int = 10) -> list[dict]:
    return [{"instruction": f"Question {i}?", "input": f"Passage {i % groups}.",
             "output": f"answer {i}", "group": f"doc{i % groups}"} for i in range(n)]


def test_finetune_commands_are_registered(capsys):
    assert main(["finetune"]) == 0
    out = capsys.readouterr().out
    for action in ("prepare", "lora", "full", "dpo", "check", "export", "runs"):
        assert action in out


def test_prepare_writes_train_and_heldout(tmp_path, capsys):
    src = write_jsonl(tmp_path / "eval-set.jsonl", _rows(40))
    assert main(["finetune", "prepare", "--task", "qa", "--from", str(src), "--out",
                 str(tmp_path / "out"), "--heldout", "0.2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["train"] + summary["heldout"] == 40 and summary["heldout"] == 8
    assert (tmp_path / "out" / "train.jsonl").exists()
    assert (tmp_path / "out" / "heldout.jsonl").exists()


def test_prepare_mixture_weights(tmp_path, capsys):
    qa = write_jsonl(tmp_path / "qa.jsonl", _rows(40))
    other = write_jsonl(tmp_path / "sum.jsonl", [
        {"instruction": "Summarize", "input": f"Text {i}", "output": f"s{i}", "task": "summarize"}
        for i in range(20)])
    assert main(["finetune", "prepare", "--from", str(qa), "--from", str(other), "--weight",
                 "qa=1", "--weight", "summarize=1", "--out", str(tmp_path / "o"), "--json"]) == 0
    tasks = json.loads(capsys.readouterr().out)["tasks"]
    assert tasks["qa"] == tasks["summarize"]


def test_prepare_reports_the_bad_line(tmp_path, capsys):
    src = write_jsonl(tmp_path / "eval-set.jsonl", [*_rows(3), "{broken", *_rows(30)])
    assert main(["finetune", "prepare", "--from", str(src), "--out", str(tmp_path / "o")]) == 2
    assert "eval-set.jsonl line 4: not valid JSON" in capsys.readouterr().err
    assert main(["finetune", "prepare", "--from", str(src), "--out", str(tmp_path / "o"),
                 "--skip-bad-rows"]) == 1
    assert "skipped:" in capsys.readouterr().err


def test_prepare_with_too_little_data(tmp_path, capsys):
    src = write_jsonl(tmp_path / "tiny.jsonl", _rows(4, groups=4))
    assert main(["finetune", "prepare", "--from", str(src), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "tiny.jsonl" in err and "at least 8 are needed" in err


def test_lora_with_a_base_not_in_the_catalogue(tmp_path, capsys):
    data = write_jsonl(tmp_path / "train.jsonl", _rows(10))
    assert main(["finetune", "lora", "--base", "no-such-model", "--data", str(data)]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'no-such-model'" in err and "gemma3-270m" in err


def test_lora_with_a_base_that_cannot_be_tuned(tmp_path, capsys):
    data = write_jsonl(tmp_path / "train.jsonl", _rows(10))
    assert main(["finetune", "lora", "--base", "all-minilm-l6-v2", "--data", str(data)]) == 2
    assert "fine-tuning needs a GGUF chat or completion model" in capsys.readouterr().err


def test_lora_with_malformed_data_names_the_line(tmp_path, capsys):
    data = write_jsonl(tmp_path / "train.jsonl", [*_rows(2), {"instruction": "no output"}])
    assert main(["finetune", "lora", "--base", "smollm2-135m", "--data", str(data)]) == 2
    assert "train.jsonl line 3: 'output' is missing or empty" in capsys.readouterr().err


def test_resume_and_export_of_unknown_runs(capsys):
    assert main(["finetune", "lora", "--resume", "ghost"]) == 2
    assert "no run 'ghost'" in capsys.readouterr().err
    assert main(["finetune", "export", "ghost"]) == 2
    assert "no run 'ghost'" in capsys.readouterr().err


def test_runs_lists_nothing_yet(capsys):
    assert main(["finetune", "runs"]) == 0
    assert "no runs yet" in capsys.readouterr().out
