"""Pretraining from scratch, small: the byte-level tokenizer round-trips text, a tiny decoder's loss
and held-out perplexity fall, the output folder loads with transformers, LoRA continued pretraining
of a tiny random Llama lowers held-out perplexity, too little text is a clear error, and the CLI
runs end to end."""

from __future__ import annotations

import json
import random

import pytest

from appkit.cli import main
from finetune.pretrain import (
    PretrainConfig, PretrainError, base_perplexity, continue_pretraining, encode, pretrain,
    read_corpus, train_tokenizer)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SUBJECTS = ["the river", "a small boat", "the old miller", "our village", "the north wind",
            "my sister", "the baker", "a grey heron", "the school teacher", "the harbour"]
VERBS = ["carries", "watches", "remembers", "follows", "finds", "brings", "keeps", "hears"]
OBJECTS = ["the morning bread", "a letter from town", "the last light", "cold water",
           "the red door", "an old song", "the long road", "fresh apples", "the evening bell"]
ENDS = ["before the rain.", "every Sunday.", "near the bridge.", "in the quiet hour.",
        "after supper.", "along the canal."]

# tiny and quick: every test here trains in a few seconds on one thread
TINY = dict(vocab_size=300, layers=2, hidden=64, heads=4, block_size=32, batch_size=8,
            eval_every=10, lr=3e-3)


def english(lines: int = 300, seed: int = 0) -> str:
    """English-like text from a small grammar: regular enough for a tiny model to learn quickly."""
    rng = random.Random(seed)
    out = []
    for i in range(lines):
        sentence = (f"{rng.choice(SUBJECTS).capitalize()} {rng.choice(VERBS)} "
                    f"{rng.choice(OBJECTS)} {rng.choice(ENDS)}")
        out.append(sentence + ("\n" if i % 5 == 4 else " "))
    return "".join(out)


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text(english(150, seed=1), encoding="utf-8")
    (folder / "b.md").write_text("# Notes\n\n" + english(150, seed=2), encoding="utf-8")
    (folder / "ignored.bin").write_bytes(b"\x00\x01")
    return folder


def test_tokenizer_trains_and_round_trips(tmp_path):
    tok = train_tokenizer([english(200)], vocab_size=400)
    assert 256 < len(tok) <= 400
    for text in [english(3, seed=9), "  Two  spaces,\ttabs\nand lines.\n",
                 "café – naïve ünïcode 北京 🙂", ""]:
        assert tok.decode(tok(text)["input_ids"]) == text
        assert tok.decode(encode(tok, text)) == text
    sample = english(5, seed=3)
    assert len(encode(tok, sample)) < len(sample.encode()) / 2  # merges learned from the corpus
    tok.save_pretrained(tmp_path / "tok")
    assert (tmp_path / "tok" / "tokenizer.json").exists()
    again = transformers.AutoTokenizer.from_pretrained(tmp_path / "tok")
    assert again.decode(again(sample)["input_ids"]) == sample


def test_read_corpus_splits_held_out_tail(corpus):
    c = read_corpus(corpus, heldout=0.1)
    assert c.files == sorted(c.files) and len(c.files) == 2
    assert c.train_text.endswith(("\n", " ")) and 0.08 < len(c.heldout_text) / c.chars < 0.12
    assert read_corpus(corpus).heldout_text == c.heldout_text  # deterministic


def test_tiny_model_learns_and_round_trips(tmp_path, corpus):
    out = tmp_path / "tiny"
    result = pretrain(corpus, out, PretrainConfig(steps=60, **TINY), log=lambda s: None)
    curve = result.curve
    assert [r["step"] for r in curve] == [0, 10, 20, 30, 40, 50, 60]
    assert curve[-1]["train_loss"] < 0.7 * curve[1]["train_loss"], curve
    assert curve[-1]["heldout_ppl"] < 0.5 * curve[0]["heldout_ppl"], curve
    assert result.heldout.ppl < result.initial.ppl and result.heldout.bits_per_char > 0
    assert json.loads((out / "curve.json").read_text()) == curve
    assert set(curve[0]) == {"step", "train_loss", "heldout_ppl", "heldout_bpc", "seconds"}

    model = transformers.AutoModelForCausalLM.from_pretrained(out)
    tok = transformers.AutoTokenizer.from_pretrained(out)
    text = english(2, seed=7)
    assert tok.decode(tok(text)["input_ids"]) == text
    ids = torch.tensor([encode(tok, text)[:32]])
    model.eval()
    with torch.no_grad():
        loaded = model(input_ids=ids, labels=ids).loss.item()
    assert loaded < 3.0  # the trained weights came back (a random model scores about ln 300 = 5.7)


def _tiny_base(folder, corpus, vocab_size=300):
    """A randomly initialised tiny Llama with a tokenizer, saved as a transformers folder."""
    tok = train_tokenizer([read_corpus(corpus).train_text], vocab_size)
    torch.manual_seed(0)
    config = transformers.LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128,
                                      num_hidden_layers=2, num_attention_heads=4,
                                      num_key_value_heads=2, max_position_embeddings=64)
    transformers.LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_continued_pretraining_with_lora_lowers_perplexity(tmp_path, corpus):
    base = _tiny_base(tmp_path / "base", corpus)
    settings = PretrainConfig(steps=40, lora_r=8, **{**TINY, "lr": 1e-2})
    before = base_perplexity(base, corpus, settings)
    result = continue_pretraining(base, corpus, tmp_path / "lora", settings, log=lambda s: None)
    assert result.curve[0]["heldout_ppl"] == pytest.approx(before.ppl, rel=1e-3)
    assert result.heldout.ppl < 0.8 * before.ppl, result.curve
    assert 0 < result.trainable < result.params
    assert (tmp_path / "lora" / "adapter_config.json").exists()
    assert (tmp_path / "lora" / "curve.json").exists()


def test_too_little_text_is_a_clear_error(tmp_path):
    small = tmp_path / "small.txt"
    small.write_text(english(4), encoding="utf-8")
    with pytest.raises(PretrainError) as err:
        pretrain(small, tmp_path / "o", PretrainConfig(steps=5, **TINY), log=lambda s: None)
    message = str(err.value)
    assert "small.txt" in message and "too little text" in message
    assert "characters" in message and "at least 32" in message


def test_bad_input(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "blank.txt").write_text("  \n")
    with pytest.raises(PretrainError, match="no readable text"):
        read_corpus(empty)
    with pytest.raises(PretrainError, match="does not exist"):
        read_corpus(tmp_path / "missing")
    for bad in ({"steps": -1}, {"layers": 0}, {"block_size": 0}, {"steps": 0},
                {"hidden": 65, "heads": 4}, {"vocab_size": 10}):
        with pytest.raises(PretrainError):
            PretrainConfig(**bad)


def test_cli_runs_end_to_end(tmp_path, corpus, capsys):
    out = tmp_path / "cli-model"
    args = ["finetune", "pretrain", "--data", str(corpus), "--out", str(out), "--vocab-size",
            "300", "--layers", "1", "--hidden", "32", "--heads", "2", "--block-size", "32",
            "--steps", "6", "--eval-every", "3", "--json"]
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["mode"] == "scratch" and summary["steps"] == 6
    assert [r["step"] for r in summary["curve"]] == [0, 3, 6]
    assert (out / "config.json").exists() and (out / "tokenizer.json").exists()

    base = _tiny_base(tmp_path / "base", corpus)
    assert main(["finetune", "pretrain", "--data", str(corpus), "--out", str(tmp_path / "l"),
                 "--continue-from", str(base), "--block-size", "32", "--steps", "3",
                 "--eval-every", "3"]) == 0
    assert "held-out perplexity" in capsys.readouterr().out

    assert main(["finetune", "pretrain", "--data", str(tmp_path / "nope"), "--out",
                 str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["finetune", "pretrain", "--data", str(corpus), "--out", str(out),
                 "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err
