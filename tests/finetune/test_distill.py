"""Distillation on tiny random Llamas: logit distillation lowers the divergence to the teacher on
held-out texts; sequence-level distillation from a teacher of another vocabulary teaches the
student the teacher's answers; logit mode with different vocabularies is a clear error; the CLI
distills end to end and registers the student with lineage; bad data names the file and line."""

from __future__ import annotations

import json

import pytest

from appkit.cli import main
from appkit.errors import AppkitError
from finetune.data import DataError, Example, encode_example
from finetune.distill import (
    DistillConfig, LogitTrainer, VocabularyMismatchError, distill, divergence, mean_divergence,
    pick_mode, read_prompts, teacher_answers, teacher_chat_model)
from finetune.runs import Run
from finetune.trainer import Trainer, TrainConfig, collate
from tests.finetune.conftest import write_jsonl
from tests.helpers import save_tiny_llama

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

WORDS = ["<pad>", "<s>", "</s>", "<unk>", "Answer:", "What", "is", "it", "the", "sky", "blue",
         "Paris", "sea", "green", "where", "who", "red", "grass", "?", "."]
# another vocabulary: other words, another size, another order
OTHER = ["<pad>", "<s>", "</s>", "<unk>", "Answer:", "sky", "What", "the", "is", "sun", "hot",
         "sea", "wet", "cold", "?", "moon", "dark", "."]
TEXTS = ["What is the sky", "where is the sea", "who is it", "What is blue", "the grass is green",
         "What is red", "where is Paris", "the sky is blue"]


def save_model(folder, words, *, seed: int):
    """A two-layer random Llama and a word-level tokenizer over ``words``, saved as a folder."""
    return save_tiny_llama(folder, words, seed=seed, max_position_embeddings=128,
                           initializer_range=0.2)


def _config(**kw) -> TrainConfig:
    values = dict(base="tiny", data="-", method="full", lr=1e-2, batch_size=4, max_steps=25,
                  save_every=1000, warmup=0.1, dropout=0.0)
    values.update(kw)
    return TrainConfig(**values)


def test_divergence_is_trl_gkd_loss():
    """Our loss is trl's generalized JSD (forward KL, reverse KL and a mix, with temperature)."""
    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    gkd = pytest.importorskip("trl.experimental.gkd")
    torch.manual_seed(0)
    s, t = torch.randn(2, 5, 11), torch.randn(2, 5, 11)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    labels = torch.where(mask.bool(), 1, -100)
    for beta, temperature in ((0.0, 1.0), (1.0, 2.0), (0.5, 1.5)):
        ours = divergence(s, t, mask, beta=beta, temperature=temperature)
        theirs = gkd.GKDTrainer.generalized_jsd_loss(s, t, labels=labels, beta=beta,
                                                     temperature=temperature)
        torch.testing.assert_close(ours, theirs)


def test_logit_distillation_lowers_the_divergence_on_heldout_texts(tmp_path, make_tiny,
                                                                    char_tokenizer):
    teacher, student = make_tiny(1), make_tiny(0)  # one vocabulary, different weights
    tok = char_tokenizer

    def enc(texts):
        return [encode_example(Example(t, ""), tok, chat_template=False, max_tokens=64)
                for t in texts]

    train, held = enc(TEXTS), enc(["What is the sea", "where is it", "the sea is green"])
    before = mean_divergence(student, teacher, held, pad_id=0)
    config = _config()
    run = Run.create("logit", {"method": "full"}, root=tmp_path)
    trainer = LogitTrainer(student, teacher, train, config, run, pad_id=0, temperature=1.0,
                           progress=False, log=lambda s: None)
    trainer.fit()
    losses = [r["loss"] for r in run.history()]
    assert len(losses) == 25 and losses[-1] < 0.5 * losses[0], losses
    after = mean_divergence(trainer.model, teacher, held, pad_id=0)
    assert after < 0.6 * before, (before, after)
    assert all(not p.requires_grad for p in teacher.parameters())


def test_distillation_on_the_answers_mixed_with_their_loss(tmp_path, make_tiny, char_tokenizer):
    teacher, student = make_tiny(1), make_tiny(0)
    rows = [encode_example(Example(t, "it is blue"), char_tokenizer, chat_template=False,
                           max_tokens=64) for t in TEXTS[:4]]
    batch = collate(rows, 0)
    run = Run.create("mix", {"method": "full"}, root=tmp_path)

    def loss(**kw):
        trainer = LogitTrainer(student, teacher, rows, _config(), run, pad_id=0, progress=False,
                               log=lambda s: None, **kw)
        with torch.no_grad():
            return trainer.step_loss(batch)

    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        s, t = student(**inputs).logits, teacher(**inputs).logits
        ce = student(**batch).loss  # transformers' own shifted loss on the answer tokens
    answers = torch.zeros_like(batch["labels"], dtype=torch.bool)
    answers[:, :-1] = batch["labels"][:, 1:] != -100  # position i predicts token i + 1
    assert 0 < answers.sum() < batch["attention_mask"].sum()
    on_answers = divergence(s, t, answers)
    torch.testing.assert_close(loss(), divergence(s, t, batch["attention_mask"]))
    torch.testing.assert_close(loss(tokens="answers"), on_answers)
    torch.testing.assert_close(loss(tokens="answers", answer_weight=1.0), ce)
    torch.testing.assert_close(loss(tokens="answers", answer_weight=0.25),
                               0.75 * on_answers + 0.25 * ce)
    with pytest.raises(AppkitError, match="distill-on must be one of all, answers, got 'prompt'"):
        loss(tokens="prompt")
    with pytest.raises(AppkitError, match="answer-weight .* between 0 and 1; got 1.5"):
        loss(answer_weight=1.5)


def _loglik(model, encoded, pad_id):
    """Mean log-likelihood per answer token (labels != -100)."""
    batch = collate(encoded, pad_id)
    model.eval()
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    labels=batch["labels"])
    return -float(out.loss)


def test_sequence_distillation_learns_a_teacher_of_another_vocabulary(tmp_path, make_tiny,
                                                                      char_tokenizer):
    teacher = save_model(tmp_path / "teacher", OTHER, seed=3)
    chat = teacher_chat_model(str(teacher), max_new_tokens=4)
    rows = [Example(t, "") for t in TEXTS]
    taught = teacher_answers(rows, chat, log=lambda s: None, progress=False)
    assert len(taught) >= len(TEXTS) // 2
    assert all(r.output and r.instruction in TEXTS for r in taught)
    # the answers are in the teacher's words, produced with the teacher's own tokenizer
    assert all(set(r.output.split()) <= set(OTHER) for r in taught)

    student = make_tiny(0)  # the character vocabulary: nothing shared with the teacher's
    encoded = [encode_example(r, char_tokenizer, chat_template=False, max_tokens=96)
               for r in taught]
    before = _loglik(student, encoded, 0)
    run = Run.create("seq", {"method": "full"}, root=tmp_path)
    trainer = Trainer(student, encoded, _config(max_steps=30), run, pad_id=0, progress=False,
                      log=lambda s: None)
    trainer.fit()
    losses = [r["loss"] for r in run.history()]
    assert sum(losses[-3:]) / 3 < 0.5 * sum(losses[:3]) / 3, losses
    assert _loglik(trainer.model, encoded, 0) > before + 1.0


def test_logit_mode_needs_one_vocabulary(tmp_path):
    assert pick_mode("auto", ["a", "b"], ["a", "b"]) == "logit"
    assert pick_mode("auto", ["a", "b"], ["b", "a"]) == "sequence"
    assert pick_mode("sequence", ["a"], ["a"]) == "sequence"
    with pytest.raises(VocabularyMismatchError, match="--mode sequence"):
        pick_mode("logit", ["a", "b"], ["a", "c", "d"], teacher="big", student="small")
    teacher = save_model(tmp_path / "t", OTHER, seed=1)
    student = save_model(tmp_path / "s", WORDS, seed=0)
    data = write_jsonl(tmp_path / "d.jsonl", [{"prompt": t} for t in TEXTS])
    with pytest.raises(VocabularyMismatchError, match=r"18 tokens.*20.*--mode sequence"):
        distill(DistillConfig(str(teacher), str(student), str(data), mode="logit"),
                log=lambda s: None, progress=False)


def _cli(tmp_path, teacher, student, data, name, *extra):
    return main(["finetune", "distill", "--teacher", str(teacher), "--student", str(student),
                 "--data", str(data), "--name", name, "--steps", "4", "--lr", "1e-2",
                 "--batch-size", "4", "--max-new-tokens", "4", "--json", *extra])


@pytest.mark.parametrize("teacher_words,mode", [(WORDS, "logit"), (OTHER, "sequence")])
def test_cli_distills_and_registers_the_student(tmp_path, capsys, monkeypatch, teacher_words,
                                                mode):
    from appkit.config import Profile
    from appkit.models import make_chat_model
    from appkit.models.catalogue import get_spec, list_models

    monkeypatch.chdir(tmp_path)
    teacher = save_model(tmp_path / "teacher", teacher_words, seed=1)
    student = save_model(tmp_path / "student", WORDS, seed=0)
    data = write_jsonl(tmp_path / "train.jsonl", [{"instruction": t} for t in TEXTS])
    assert _cli(tmp_path, teacher, student, data, f"tiny-{mode}") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mode"] == mode and out["status"] == "finished" and out["step"] == 4
    assert out["model"] == f"tiny-{mode}"
    run = Run.open(out["run"])
    assert len(run.history()) == 4  # the loss curve
    assert run.info["distill"] == {"teacher": str(teacher), "mode": mode}
    assert (run.path / "teacher.jsonl").exists() == (mode == "sequence")
    spec = get_spec(f"tiny-{mode}")
    assert spec.format == "hf" and spec.name in {m.name for m in list_models()}
    assert spec.lineage["teacher"] == str(teacher) and spec.lineage["mode"] == mode
    assert spec.lineage["base"] == str(student) and spec.lineage["data"] == str(data.resolve())
    assert spec.lineage["data_hash"] and spec.lineage["steps"] == 4
    # the registered student is a model the app can answer with
    llm = make_chat_model(Profile(), spec.name, max_tokens=3, temperature=0.0)
    assert isinstance(llm.invoke("What is it ?").content, str)
    # the same name again is refused rather than overwritten
    assert _cli(tmp_path, teacher, student, data, f"tiny-{mode}") == 2
    assert "exists" in capsys.readouterr().err


def test_cli_logit_mode_with_other_vocabulary_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    teacher = save_model(tmp_path / "teacher", OTHER, seed=1)
    student = save_model(tmp_path / "student", WORDS, seed=0)
    data = write_jsonl(tmp_path / "train.jsonl", [{"instruction": t} for t in TEXTS])
    assert _cli(tmp_path, teacher, student, data, "x", "--mode", "logit") == 2
    err = capsys.readouterr().err
    assert "--mode sequence" in err and "Traceback" not in err


def test_bad_data_names_the_file_and_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "nope.jsonl"
    assert main(["finetune", "distill", "--teacher", "t", "--student", "s",
                 "--data", str(missing)]) == 2
    assert "no such data file" in capsys.readouterr().err
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "ok"}, {"prompt": "  "}])
    with pytest.raises(DataError, match=r"bad.jsonl, line 2: the prompt .* is missing or empty"):
        read_prompts(bad)
    broken = write_jsonl(tmp_path / "broken.jsonl", ['{"prompt": "a"}', "{not json"])
    with pytest.raises(DataError, match="broken.jsonl, line 2: not JSON"):
        read_prompts(broken)
    empty = write_jsonl(tmp_path / "empty.jsonl", [])
    with pytest.raises(DataError, match="empty.jsonl holds no rows"):
        read_prompts(empty)
    rows = read_prompts(write_jsonl(tmp_path / "ok.jsonl", [
        {"prompt": "a"}, {"question": "b", "context": "c"}, {"instruction": "d", "output": "e"}]))
    assert [(r.instruction, r.input, r.output) for r in rows] == [
        ("a", "", ""), ("b", "c", ""), ("d", "", "e")]


def test_grounded_keeps_answers_found_in_the_input_and_refusals():
    from finetune.distill import in_input, is_grounded, keep_answers

    ctx = "The  Eiffel Tower is in Paris. It opened in 1889."
    rows = [Example("Where?", "Paris.", input=ctx),
            Example("When?", "the eiffel tower is", input=ctx),
            Example("Who built it?", "Gustave Eiffel", input=ctx),
            Example("Colour?", "The documents do not say.", input=ctx),
            Example("No context", "Paris", input=""), Example("Empty", ".", input=ctx)]
    assert [is_grounded(r) for r in rows] == [True, True, False, True, False, False]
    assert [in_input(r) for r in rows] == [True, True, False, False, False, False]
    assert keep_answers(rows, "all", log=lambda s: None) == rows
    lines = []
    assert [r.instruction for r in keep_answers(rows, "grounded", log=lines.append)] == [
        "Where?", "When?", "Colour?"]
    assert lines == ["kept 3 of 6 teacher answers (grounded in the input or refusals)"]
    assert [r.instruction for r in keep_answers(rows, "spans", log=lines.append)] == [
        "Where?", "When?"]
    assert lines[-1] == "kept 2 of 6 teacher answers (found in the input)"
    with pytest.raises(AppkitError, match="none of the 1 teacher answers is grounded in the "
                                          r"input or refusals \(--keep grounded\)"):
        keep_answers(rows[2:3], "grounded", log=lambda s: None)
    with pytest.raises(AppkitError, match="unknown keep 'some'; use all, grounded or spans"):
        keep_answers(rows, "some")


def test_saved_teacher_answers_are_matched_by_prompt_and_input(tmp_path):
    from finetune.data import write_rows
    from finetune.distill import saved_answers

    rows = [Example("Q1", "", input="c1"), Example("Q1", "", input="c2")]
    saved = write_rows([Example("Q1", "from c2", input="c2"), Example("Q1", "from c1", input="c1"),
                        Example("Q9", "unused")], tmp_path / "teacher.jsonl")
    assert [r.output for r in saved_answers(rows, saved)] == ["from c1", "from c2"]
    with pytest.raises(DataError, match=r"teacher.jsonl has no answer for 1 of the 2 prompts "
                                        r"\(first: 'Q2'\)"):
        saved_answers([rows[0], Example("Q2", "")], saved)
    with pytest.raises(DataError, match="no such data file"):
        saved_answers(rows, tmp_path / "missing.jsonl")


def test_cli_reuses_a_runs_teacher_answers_and_keeps_grounded_ones(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    teacher = save_model(tmp_path / "teacher", OTHER, seed=1)
    student = save_model(tmp_path / "student", WORDS, seed=0)
    prompts = [{"instruction": t, "input": "the sky is blue"} for t in TEXTS]
    data = write_jsonl(tmp_path / "train.jsonl", prompts)
    answers = write_jsonl(tmp_path / "answers.jsonl", [
        {**p, "output": "sky is blue" if i % 2 else "red"} for i, p in enumerate(prompts)])
    assert _cli(tmp_path, teacher, student, data, "reuse", "--teacher-answers", str(answers),
                "--keep", "grounded") == 0
    out = json.loads(capsys.readouterr().out)
    run = Run.open(out["run"])
    assert run.info["teacher_rows"] == 8 and run.info["target_rows"] == 4
    kept = [json.loads(line)["output"] for line in (run.path / "teacher.jsonl").open()]
    assert kept == [a["output"] for a in map(json.loads, answers.read_text().splitlines())]
    # logit mode learns from distributions: answers or a filter there are an error, not ignored
    same = save_model(tmp_path / "same", WORDS, seed=1)
    assert _cli(tmp_path, same, student, data, "x", "--keep", "grounded") == 2
    assert "sequence-level" in capsys.readouterr().err
