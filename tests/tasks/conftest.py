"""Fixtures of the task tests: a tiny randomly initialised BERT with the packaged MiniLM's
tokenizer (fast to train on the CPU; checks the plumbing, not the quality)."""

from __future__ import annotations

import pytest


@pytest.fixture
def tiny_bert(tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("torch")
    from appkit.models.catalogue import resolve_model

    _, minilm = resolve_model("all-minilm-l6-v2")
    folder = tmp_path / "tiny-bert"
    config = transformers.BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, intermediate_size=64)
    transformers.BertModel(config).save_pretrained(folder)
    transformers.AutoTokenizer.from_pretrained(str(minilm)).save_pretrained(folder)
    return folder
