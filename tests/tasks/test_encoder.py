"""Encoder-only classify with a tiny randomly initialised BERT (the packaged MiniLM's tokenizer)."""

from __future__ import annotations

import pytest

from appkit.config import TasksConfig
from appkit.tasks import TaskContext, TaskInputError, run_task
from appkit.tasks.encoder import EncoderClassifier, is_classifier_folder

pytest.importorskip("transformers")
pytest.importorskip("torch")


def test_fit_predict_save_and_run_as_a_task(tiny_bert, tmp_path):
    texts = ["charged twice refund invoice", "app crashes error blank page"] * 8
    labels = ["billing", "bug"] * 8
    clf = EncoderClassifier(tiny_bert, labels=("billing", "bug"))
    clf.fit(texts, labels, epochs=15, lr=1e-3)
    assert clf.predict(["refund invoice charged", "crashes error page"]) == ["billing", "bug"]
    saved = clf.save(tmp_path / "clf")
    assert is_classifier_folder(saved)
    again = EncoderClassifier(saved)
    assert again.labels == ("billing", "bug")
    result = run_task("classify", "invoice refund", TaskContext(again, TasksConfig()))
    assert result.output == "billing" and result.details["encoder"] is True


def test_unknown_training_label_and_no_labels(tiny_bert):
    with pytest.raises(TaskInputError, match="needs labels"):
        EncoderClassifier(tiny_bert)
    clf = EncoderClassifier(tiny_bert, labels=("a",))
    with pytest.raises(TaskInputError, match=r"\['b'\] are not among"):
        clf.fit(["x"], ["b"])
