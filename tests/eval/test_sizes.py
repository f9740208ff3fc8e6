"""The model-size table (``appkit models compare --family``) on tiny models: a family is found
through the catalogue's lineage, each member is described from its files and measured (GGUF
through llama.cpp, transformers folders through transformers, in a fresh process by default),
and the command prints it as a table or JSON, with the task's metrics when asked."""

from __future__ import annotations

import json

import pytest

from appkit.cli import main
from appkit.models.catalogue import ModelSpec, family, lineage_root, register_model
from eval.sizes import measure_isolated, measure_model, size_table, variant
from tests.helpers import save_tiny_gguf

pytest.importorskip("llama_cpp")
pytest.importorskip("transformers")
pytest.importorskip("gguf")

WORDS = ["<pad>", "<s>", "</s>", "<unk>", "charged", "twice", "it", "crashes", "billing", "bug"]
MEASURED = {"memory_mb": 12, "load_s": 0.1, "prompt_tok_s": 100.0}


@pytest.fixture
def tiny_family(tmp_path, monkeypatch):
    """An original GGUF, a smaller 'pruned' transformers model with its GGUF export, a distilled
    transformers model, and an unrelated GGUF, registered in a private catalogue."""
    monkeypatch.setenv("APPKIT_CACHE", str(tmp_path / "cache"))
    big = save_tiny_gguf(tmp_path / "big", WORDS, intermediate_size=64)
    small = save_tiny_gguf(tmp_path / "small", WORDS, intermediate_size=32)
    for spec in (
        ModelSpec("tiny-base", "chat", "gguf", local_path=str(big)),
        ModelSpec("tiny-pruned", "chat", "hf", local_path=str(small.parent),
                  lineage={"base": "tiny-base", "pruned": "mlp", "ratio": 0.5}),
        ModelSpec("tiny-pruned-f16", "chat", "gguf", local_path=str(small),
                  lineage={"base": "tiny-base", "from": "tiny-pruned", "pruned": "mlp",
                           "ratio": 0.5, "quant": "f16"}),
        ModelSpec("tiny-student", "chat", "hf", local_path=str(big.parent),
                  lineage={"base": "tiny-pruned", "teacher": "qwen2.5-coder-0.5b"}),
        ModelSpec("elsewhere", "chat", "gguf", local_path=str(big)),
        ModelSpec("tiny-embedder", "embedding", "sentence-transformers",
                  local_path=str(tmp_path), lineage={"base": "tiny-base"}),
    ):
        register_model(spec, persist=True)  # the measuring process reads the catalogue file
    return ["tiny-base", "tiny-pruned", "tiny-pruned-f16", "tiny-student"]


def test_a_family_follows_lineage_back_to_the_original(tiny_family):
    assert lineage_root("tiny-student") == "tiny-base"
    assert [s.name for s in family("tiny-student")] == [*tiny_family, "tiny-embedder"]
    assert [s.name for s in family("elsewhere")] == ["elsewhere"]
    assert lineage_root("smollm2-135m") == "smollm2-135m"


@pytest.mark.parametrize("lineage,label", [
    ({}, "original"),
    ({"base": "b", "pruned": "heads", "ratio": 0.25, "quant": "q4_k_m"}, "pruned heads 25%"),
    ({"base": "b", "teacher": "big", "method": "full"}, "distilled from big"),
    ({"base": "b", "method": "lora", "mode": "lora"}, "LoRA adapter (lora)"),
    ({"base": "b", "method": "ia3", "mode": "merged"}, "fine-tuned (ia3)"),
    ({"base": "b", "pruned": "mlp", "ratio": 0.5, "teacher": "t"},
     "pruned mlp 50%, distilled from t"),
])
def test_variant_names_what_a_model_is(lineage, label):
    assert variant(ModelSpec("m", "chat", "gguf", lineage=lineage)) == label


def test_every_member_is_described_and_measured(tiny_family):
    rows = size_table("tiny-pruned-f16", threads=1, measure=measure_model)
    by = {r["model"]: r for r in rows}
    assert [r["model"] for r in rows] == tiny_family  # the embedder is not a generator
    assert by["tiny-base"]["variant"] == "original"
    assert by["tiny-student"]["variant"] == "distilled from qwen2.5-coder-0.5b"
    assert by["tiny-base"]["quant"] == "f16" and by["tiny-pruned"]["quant"] == "f32"
    assert by["tiny-pruned-f16"]["params_m"] < by["tiny-base"]["params_m"]
    assert by["tiny-pruned"]["params_m"] == by["tiny-pruned-f16"]["params_m"]
    for row in rows:
        assert "error" not in row, row
        assert row["size_mb"] > 0 and row["prompt_tok_s"] > 0 and row["gen_tok_s"] > 0
        assert isinstance(row["memory_mb"], int)
    assert by["tiny-base"]["gen_vs_original"] == 1.0


def test_a_model_is_measured_in_a_process_of_its_own(tiny_family):
    got = measure_isolated("tiny-base", threads=1, prompt_tokens=16, new_tokens=4)
    assert set(got) == {"memory_mb", "load_s", "prompt_tok_s", "gen_tok_s"}
    assert got["gen_tok_s"] > 0


def test_a_model_that_fails_is_a_row_with_the_reason(tiny_family, tmp_path):
    def measure(name, threads):
        if name == "tiny-pruned":
            raise RuntimeError("out of memory")
        return {**MEASURED, "gen_tok_s": 5.0}

    rows = size_table("tiny-base", measure=measure)
    by = {r["model"]: r for r in rows}
    assert by["tiny-pruned"]["error"] == "RuntimeError: out of memory"
    assert by["tiny-student"]["gen_vs_original"] == 1.0


def _fake_measure(monkeypatch):
    speeds = {"tiny-base": 10.0, "tiny-pruned": 4.0, "tiny-pruned-f16": 15.0, "tiny-student": 5.0}
    monkeypatch.setattr("eval.sizes.measure_isolated",
                        lambda name, threads=0: {**MEASURED, "gen_tok_s": speeds[name]})


def test_cli_prints_the_size_table(tiny_family, monkeypatch, capsys):
    _fake_measure(monkeypatch)
    assert main(["models", "compare", "--family", "tiny-base", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == tiny_family
    assert {"variant", "format", "quant", "params_m", "size_mb", "memory_mb", "prompt_tok_s",
            "gen_tok_s", "gen_vs_original"} <= set(rows[0])
    assert rows[2]["gen_vs_original"] == 1.5
    assert main(["models", "compare", "--family", "tiny-student"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:5] == ["model", "variant", "format", "quant", "params_m"]
    assert lines[1].startswith("tiny-base ") and "original" in lines[1]


def test_cli_adds_the_task_metric(tiny_family, monkeypatch, capsys, tmp_path):
    from appkit.testing import FakeChatModel

    _fake_measure(monkeypatch)
    fake = FakeChatModel()
    fake.default = '{"label": "billing"}'
    monkeypatch.setattr("appkit.tasks.cli.make_task_model", lambda *a, **k: fake)
    rows = [{"input": "charged twice", "reference": "billing"},
            {"input": "it crashes", "reference": "bug"}]
    (tmp_path / "e.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    assert main(["models", "compare", "--family", "tiny-base", "--task", "classify", "--eval",
                 str(tmp_path / "e.jsonl"), "--labels", "billing,bug", "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in table] == tiny_family
    assert all(r["accuracy"] == 0.5 and r["memory_mb"] == 12 for r in table)


def test_cli_family_defaults_to_the_profile_chat_model(monkeypatch, capsys):
    seen = []
    monkeypatch.setattr("eval.sizes.size_table",
                        lambda model, **kw: seen.append(model) or [{"model": model}])
    assert main(["models", "compare", "--family", "--json"]) == 0
    assert seen == ["qwen2.5-coder-0.5b"]


@pytest.mark.parametrize("argv,message", [
    (["--family", "x", "--models", "a,b"], "not both"),
    (["--family", "x", "--task", "classify"], "needs both --task TASK and --eval FILE"),
])
def test_cli_bad_family_input_is_one_line(argv, message, capsys):
    assert main(["models", "compare", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("appkit: error:") and message in err
