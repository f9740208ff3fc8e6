"""``appkit align``: pairs, reward (on a tiny BERT folder) and score, and their errors for people."""

from __future__ import annotations

import json

from appkit.cli import main
from finetune.prefs import read_preferences
from tests.finetune.conftest import write_jsonl
from tests.finetune.test_reward import synthetic_pairs, tiny_bert


def _qa_rows(n: int = 8) -> list[dict]:
    return [{"instruction": f"Question {i}?", "input": f"Passage {i} says answer {i}.",
             "output": f"answer {i}", "group": f"doc{i}"} for i in range(n)]


def test_align_commands_are_registered(capsys):
    assert main(["align"]) == 0
    out = capsys.readouterr().out
    for action in ("pairs", "reward", "score", "rl", "table"):
        assert action in out


def test_pairs_from_auto_and_harmless(tmp_path, capsys):
    rows = write_jsonl(tmp_path / "qa.jsonl", _qa_rows())
    out = tmp_path / "prefs.jsonl"
    assert main(["align", "pairs", "--auto", str(rows), "--harmless", "-o", str(out),
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["sources"] == {"answerable": 8, "grounded": 8, "harmless": 30,
                                  "unanswerable": 16}
    assert len(read_preferences(out)[0]) == 62


def test_pairs_with_near_misses(tmp_path, capsys):
    two = [{"instruction": "Who built it?", "input": "Ada built it in 1850.", "output": "Ada",
            "group": "doc9"},
           {"instruction": "When?", "input": "Ada built it in 1850.", "output": "1850",
            "group": "doc9"}]
    rows = write_jsonl(tmp_path / "qa.jsonl", _qa_rows() + two)
    out = tmp_path / "prefs.jsonl"
    assert main(["align", "pairs", "--auto", str(rows), "--near-miss", "-o", str(out),
                 "--json"]) == 0
    # "Passage 3 says answer 3." has no two words sharing none with "answer 3": no pair there
    assert json.loads(capsys.readouterr().out)["sources"]["near-miss"] == 2
    near = [p for p in read_preferences(out)[0] if p.source == "near-miss"]
    assert {(p.chosen, p.rejected) for p in near} == {("Ada [1]", "1850 [1]"),
                                                      ("1850 [1]", "Ada [1]")}


def test_bad_pair_is_an_error_with_its_line(tmp_path, capsys):
    bad = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Q", "chosen": "a", "rejected": "a"}])
    assert main(["align", "pairs", "--pairs", str(bad), "-o", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert "p.jsonl, line 1: chosen and rejected are the same" in err and "Traceback" not in err


def test_reward_then_score(tmp_path, capsys):
    model, tok = tiny_bert(tmp_path)
    base = tmp_path / "tiny-bert"
    model.save_pretrained(base)
    tok.save_pretrained(base)
    pairs = write_jsonl(tmp_path / "prefs.jsonl",
                        [p.__dict__ for p in synthetic_pairs(40)])
    assert main(["align", "reward", "--pairs", str(pairs), "--base", str(base), "--name", "cli-rm",
                 "--lr", "1e-3", "--epochs", "3", "--max-length", "48", "--threads", "1",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["model"] == "cli-rm" and summary["accuracy"] >= 0.8

    answers = write_jsonl(tmp_path / "answers.jsonl", [
        {"question": "alpha", "contexts": ["alpha beta"], "answer": "alpha ok cited [1]"},
        {"prompt": "question alpha", "answer": "alpha maybe wrong"}])
    assert main(["align", "score", "--reward", "cli-rm", "--answers", str(answers), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert scored["answers"] == 2 and scored["rows"][0]["reward"] > scored["rows"][1]["reward"]

    missing = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "answer": "a"}, {"answer": "a"}])
    assert main(["align", "score", "--reward", "cli-rm", "--answers", str(missing)]) == 2
    assert "bad.jsonl, line 2: give 'prompt' or 'question'" in capsys.readouterr().err


def test_method_table(tmp_path, capsys):
    from finetune.runs import Run

    def eval_run(name, **means):
        d = tmp_path / name
        d.mkdir()
        (d / "summary.json").write_text(json.dumps(
            {"metrics": {k: {"mean": v} for k, v in means.items()}}))
        (d / "cases.jsonl").write_text("")
        return d

    base = eval_run("base", token_f1=0.5, correct_refusal=0.2)
    rl = eval_run("rl", token_f1=0.49, correct_refusal=0.6, reward_score=1.5)
    Run.create("rl-run", {}).update(train_seconds=90)
    assert main(["align", "table", f"base={base}", f"rl={rl}:rl-run", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0] == {"method": "base", "token_f1": 0.5, "correct_refusal": 0.2,
                       "harmful_refusal": None, "grounded_answer": None, "reward_score": None,
                       "train_minutes": None}
    assert rows[1]["reward_score"] == 1.5 and rows[1]["train_minutes"] == 1.5
    assert main(["align", "table", f"base={base}", f"rl={rl}:rl-run"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["method", "token_f1", "correct_refusal"]
    assert out[2].startswith("rl ") and "0.600" in out[2] and "1.5" in out[2]
    assert main(["align", "table", "nolabel"]) == 2
