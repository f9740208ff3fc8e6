"""``appkit run`` and ``appkit models compare`` with fake models."""

from __future__ import annotations

import json

import pytest

from appkit.cli import main
from appkit.testing import FakeChatModel


@pytest.fixture
def fake(monkeypatch):
    llm = FakeChatModel()
    monkeypatch.setattr("appkit.tasks.cli.make_task_model", lambda *a, **k: llm)
    return llm


def test_run_classify_with_labels_from_the_command_line(tmp_path, fake, capsys):
    (tmp_path / "t.txt").write_text("I was charged twice.", encoding="utf-8")
    fake.replies = ['{"label": "billing"}']
    assert main(["run", "classify", "--input", "t.txt", "--labels", "billing,bug", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["output"] == "billing" and out["details"]["labels"] == ["billing", "bug"]


def test_run_translate_with_profile_languages(write_profile, tmp_path, fake, capsys):
    path = write_profile({"tasks": {"source_lang": "en", "target_lang": "de"}})
    (tmp_path / "t.txt").write_text("Good morning.", encoding="utf-8")
    fake.replies = ["Guten Morgen."]
    assert main(["run", "translate", "-p", str(path), "--input", "t.txt"]) == 0
    assert capsys.readouterr().out.strip() == "Guten Morgen."
    assert "into German" in fake.calls[0][-1].content


def test_run_summarize_a_json_chat_transcript(tmp_path, fake, capsys):
    chat = [{"role": "Ana", "content": "Ship Friday?"}, {"role": "Bo", "content": "Yes."}]
    (tmp_path / "c.json").write_text(json.dumps(chat), encoding="utf-8")
    fake.replies = ["They ship Friday."]
    assert main(["run", "summarize", "--input", "c.json"]) == 0
    assert "Ana: Ship Friday?\nBo: Yes." in fake.calls[0][-1].content


@pytest.mark.parametrize("argv,message", [
    (["run", "summarize", "--input", "empty.txt"], "is empty"),
    (["run", "summarize", "--input", "missing.txt"], "no such input file"),
    (["run", "translate", "--input", "t.txt", "--target", "zz"], "unknown target language code"),
    (["run", "classify", "--input", "t.txt"], "classify needs labels"),
    (["run", "extract", "--input", "t.txt", "--schema", "bad.json"], "not a valid JSON Schema"),
    (["run", "classify", "--input", "t.txt", "--labels", "a,b", "--shots", "few-shot"],
     "need worked examples"),
])
def test_bad_input_is_one_clear_line(tmp_path, fake, capsys, argv, message):
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "t.txt").write_text("Some text.", encoding="utf-8")
    (tmp_path / "bad.json").write_text('{"type": "object", "properties": {"a": {"type": 3}}}')
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("appkit: error:") and message in err


def test_run_code_exit_status_follows_the_tests(tmp_path, fake, capsys):
    (tmp_path / "task.md").write_text("Write add(a, b).", encoding="utf-8")
    (tmp_path / "test_add.py").write_text("from solution import add\nassert add(1, 1) == 2\n")
    fake.replies = ["```python\ndef add(a, b):\n    return a + b\n```"]
    assert main(["run", "code", "--input", "task.md", "--tests", "test_add.py"]) == 0
    fake.replies = ["```python\ndef add(a, b):\n    return 0\n```"]
    assert main(["run", "code", "--input", "task.md", "--tests", "test_add.py"]) == 1
    assert "tests failed" in capsys.readouterr().err


def test_a_model_of_the_wrong_role_is_refused(tmp_path, capsys):
    (tmp_path / "t.txt").write_text("text", encoding="utf-8")
    assert main(["run", "write", "--input", "t.txt", "--model", "all-minilm-l6-v2"]) == 2
    assert "is a embedding model; write accepts chat models" in capsys.readouterr().err


def test_models_compare_prints_a_table(tmp_path, fake, capsys, monkeypatch):
    rows = [{"input": "charged twice", "reference": "billing"},
            {"input": "it crashes", "reference": "bug"}]
    (tmp_path / "e.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    fake.default = '{"label": "billing"}'
    monkeypatch.setattr("appkit.models.catalogue.resolve_model",
                        lambda name: (type("S", (), {"role": "chat"})(), tmp_path / "e.jsonl"))
    assert main(["models", "compare", "--task", "classify", "--eval", "e.jsonl",
                 "--models", "m1", "--labels", "billing,bug", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table[0]["model"] == "m1" and table[0]["accuracy"] == 0.5
    assert {"macro_f1", "s_per_example", "memory_mb", "size_mb"} <= set(table[0])


def test_models_without_action_still_lists_the_catalogue(capsys):
    assert main(["models", "--json"]) == 0
    assert any(r["name"] == "qwen2.5-coder-0.5b" for r in json.loads(capsys.readouterr().out))


def test_models_compare_says_why_an_output_failed(tmp_path, fake, capsys, monkeypatch):
    rows = [{"input": "charged twice", "reference": "billing"}]
    (tmp_path / "e.jsonl").write_text(json.dumps(rows[0]), encoding="utf-8")
    fake.default = "no idea"
    monkeypatch.setattr("appkit.models.catalogue.resolve_model",
                        lambda name: (type("S", (), {"role": "chat"})(), tmp_path / "e.jsonl"))
    assert main(["models", "compare", "--task", "classify", "--eval", "e.jsonl",
                 "--models", "m1", "--labels", "billing,bug", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert row["failures"] == 1
    assert row["failure_reasons"][0].startswith("'charged twice': the model's reply names no label")
