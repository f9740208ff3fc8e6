"""Encoder-only extract: BIO tagging with a tiny randomly initialised BERT (fast) and the packaged
MiniLM (slow)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from appkit.config import Profile, TasksConfig
from appkit.errors import AppkitError
from appkit.tasks import ENTITY_SCHEMA, TaskContext, TaskInputError, get_task, run_task
from appkit.tasks.encoder_tokens import (
    EncoderTokenClassifier,
    entity_spans,
    is_token_classifier_folder,
    load_entity_examples,
)

REPO = Path(__file__).resolve().parents[2]
TRAIN = REPO / "benchmarks" / "tasks" / "extract_train.jsonl"
EVAL = REPO / "benchmarks" / "tasks" / "extract_eval.jsonl"

TEXTS = ["Alice visited Paris in May.", "Bob Stone works for Acme in Rome.",
         "In June, Alice met Bob Stone."]
GOLD = [
    [{"text": "Alice", "type": "PERSON"}, {"text": "Paris", "type": "LOCATION"},
     {"text": "May", "type": "DATE"}],
    [{"text": "Bob Stone", "type": "PERSON"}, {"text": "Acme", "type": "ORGANIZATION"},
     {"text": "Rome", "type": "LOCATION"}],
    [{"text": "June", "type": "DATE"}, {"text": "Alice", "type": "PERSON"},
     {"text": "Bob Stone", "type": "PERSON"}],
]
TYPES = ("PERSON", "ORGANIZATION", "LOCATION", "DATE")


def test_entity_spans_by_text_offsets_and_case():
    text = "Ada met Alan. alan left."
    assert entity_spans(text, [{"text": "Alan", "type": "person"}]) == [(8, 12, "PERSON")]
    assert entity_spans(text, [{"text": "ALAN", "label": "PERSON"}]) == [
        (8, 12, "PERSON"), (14, 18, "PERSON")]
    assert entity_spans(text, [{"start": 0, "end": 3, "type": "PERSON"},
                               {"text": "Ada met", "type": "MISC"}]) == [(0, 3, "PERSON")]
    with pytest.raises(TaskInputError, match="x.jsonl, line 2: entity 'Bea' does not occur"):
        entity_spans(text, [{"text": "Bea", "type": "PERSON"}], where="x.jsonl, line 2: ")
    with pytest.raises(TaskInputError, match="outside the text"):
        entity_spans(text, [{"start": 3, "end": 99, "type": "PERSON"}])
    with pytest.raises(TaskInputError, match="no 'type'"):
        entity_spans(text, [{"text": "Ada"}])


def test_the_train_and_eval_files_read_as_labelled_spans(tmp_path):
    train = load_entity_examples(TRAIN)
    assert len(train) == 40 and all(spans for _, spans in train)
    assert {s[2] for _, spans in train for s in spans} == set(TYPES)
    text, spans = load_entity_examples(EVAL)[0]
    assert [text[a:b] for a, b, _ in spans] == ["Marie Curie", "University of Paris", "1906"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "Ada.", "entities": []}\n{"input": "Ada."}\n', encoding="utf-8")
    with pytest.raises(TaskInputError, match=r"bad.jsonl, line 2: expected"):
        load_entity_examples(bad)


@pytest.fixture
def tagger(tiny_bert, tmp_path):
    pytest.importorskip("torch")
    ner = EncoderTokenClassifier(tiny_bert, labels=TYPES)
    ner.fit(TEXTS * 4, GOLD * 4, epochs=40, lr=3e-3)
    return ner.save(tmp_path / "ner")


def test_fit_predict_save_and_run_as_extract(tagger):
    from eval.tasks import score_task

    assert is_token_classifier_folder(tagger)
    again = EncoderTokenClassifier(tagger)
    assert again.labels == TYPES and again.role in get_task("extract").roles
    preds = again.predict(TEXTS)
    assert score_task("extract", preds, [{"entities": g} for g in GOLD])["entity_f1"] == 1.0
    result = run_task("extract", TEXTS[0], TaskContext(again, TasksConfig()))
    assert result.output == {"entities": GOLD[0]} and result.details["encoder"] is True
    import jsonschema

    jsonschema.validate(result.output, ENTITY_SCHEMA)  # the LLM path's schema
    with pytest.raises(TaskInputError, match="named entities only"):
        run_task("extract", TEXTS[0], TaskContext(again, TasksConfig(), schema={"type": "object"}))


def test_long_texts_are_read_in_windows(tagger):
    ner = EncoderTokenClassifier(tagger, max_length=16)
    text = " ".join(["The weather was calm that day."] * 6 + [TEXTS[1]])
    assert {"text": "Rome", "type": "LOCATION"} in ner.predict([text])[0]["entities"]


def test_selected_by_its_folder_for_extract_only(tagger):
    from appkit.tasks.cli import make_task_model

    model = make_task_model(Profile(), get_task("extract"), str(tagger), None)
    assert isinstance(model, EncoderTokenClassifier)
    with pytest.raises(AppkitError, match="is a token-classifier model; classify accepts"):
        make_task_model(Profile(), get_task("classify"), str(tagger), None)


def test_compare_reports_the_tagger(tagger, tmp_path, capsys):
    from eval.tasks_cli import compare_models

    eval_set = tmp_path / "eval.jsonl"
    eval_set.write_text("".join(json.dumps({"input": t, "reference": {"entities": g}}) + "\n"
                                for t, g in zip(TEXTS, GOLD)), encoding="utf-8")
    profile = tmp_path / "appkit.toml"
    profile.write_text("", encoding="utf-8")
    args = argparse.Namespace(task="extract", eval=str(eval_set), limit=None, models=str(tagger),
                              profile=str(profile), labels=None, source=None, target=None,
                              shots=None, examples=None, schema=None, tests=None, model=None,
                              max_tokens=None, judge=None)
    row = compare_models(args)[0]
    assert row["role"] == "token-classifier" and row["entity_f1"] == 1.0
    assert row["parse_rate"] == 1.0 and row["failures"] == 0


def test_unknown_training_type_and_no_types(tiny_bert):
    with pytest.raises(TaskInputError, match="needs labels"):
        EncoderTokenClassifier(tiny_bert)
    ner = EncoderTokenClassifier(tiny_bert, labels=("PERSON",))
    with pytest.raises(TaskInputError, match=r"\['LOCATION'\] are not among"):
        ner.fit(["Ada in Rome."], [[{"text": "Rome", "type": "LOCATION"}]])
    with pytest.raises(TaskInputError, match="one entity list per training text"):
        ner.fit(["Ada."], [])


@pytest.mark.slow
def test_packaged_minilm_learns_entities_from_a_few_sentences(tmp_path):
    pytest.importorskip("torch")
    from eval.tasks import score_task

    train = load_entity_examples(TRAIN)[:12]
    ner = EncoderTokenClassifier("all-minilm-l6-v2", labels=TYPES)
    fit = ner.fit([t for t, _ in train], [s for _, s in train], epochs=12, lr=1e-4)
    assert fit["loss"] < 1.0
    folder = ner.save(tmp_path / "minilm-ner")
    tuned = EncoderTokenClassifier(folder)
    texts = [t for t, _ in train[:6]]
    refs = [{"entities": [{"text": t[a:b], "type": ty} for a, b, ty in s]} for t, s in train[:6]]
    assert score_task("extract", tuned.predict(texts), refs)["entity_f1"] > 0.5
    result = run_task("extract", load_entity_examples(EVAL)[1][0], TaskContext(tuned))
    assert isinstance(result.output["entities"], list) and result.calls == 1
