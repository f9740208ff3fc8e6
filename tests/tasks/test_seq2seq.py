"""The seq2seq path with a tiny randomly initialised T5 built here (no seq2seq weights ship)."""

from __future__ import annotations

import pytest

from appkit.config import TasksConfig
from appkit.tasks import TaskContext, TaskInputError, run_task
from appkit.tasks.seq2seq import Seq2SeqModel, is_seq2seq_folder

transformers = pytest.importorskip("transformers")
pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_t5(tmp_path_factory):
    from appkit.models.catalogue import resolve_model

    folder = tmp_path_factory.mktemp("tiny-t5")
    _, minilm = resolve_model("all-minilm-l6-v2")  # any local tokenizer will do for a random model
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(minilm))
    config = transformers.T5Config(vocab_size=tokenizer.vocab_size, d_model=16, d_kv=8, d_ff=32,
                                   num_layers=1, num_heads=2, decoder_start_token_id=0,
                                   pad_token_id=tokenizer.pad_token_id, eos_token_id=102)
    transformers.T5ForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_tiny_t5_summarizes_and_translates(tiny_t5):
    assert is_seq2seq_folder(tiny_t5)
    model = Seq2SeqModel(tiny_t5, max_new_tokens=8)
    result = run_task("summarize", "A long text about bikes.", TaskContext(model))
    assert isinstance(result.output, str) and result.calls == 1
    out = run_task("translate", "Hello.", TaskContext(model, TasksConfig(target_lang="de")))
    assert out.details["target"] == "de"


def test_long_input_is_cut_to_the_encoder_limit(tiny_t5):
    model = Seq2SeqModel(tiny_t5, max_new_tokens=4)
    result = run_task("summarize", "word " * 1500, TaskContext(model))
    assert result.details["pieces"] > 1


def test_seq2seq_refuses_other_tasks_and_other_folders(tiny_t5, tmp_path):
    with pytest.raises(TaskInputError, match="serve summarize and translate"):
        run_task("write", "x", TaskContext(Seq2SeqModel(tiny_t5)))
    with pytest.raises(TaskInputError, match="not a transformers encoder-decoder folder"):
        Seq2SeqModel(tmp_path).warm_up()
