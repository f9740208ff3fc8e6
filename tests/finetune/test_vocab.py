"""Vocabulary trimming: on a byte-level BPE trained here, the kept tokens include everything the
data needs (with the pieces BPE builds them from), the data tokenizes exactly as before, other
text still encodes and decodes; a pruned model keeps the original's logits on the kept tokens and
reloads; chained with MLP pruning the map to the base vocabulary composes; the GGUF export trims
the base GGUF's tokenizer the same way and llama.cpp gives the transformers logits; bad input is a
clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appkit.cli import main
from finetune.prune import PruneConfig, PruneError, prune
from finetune.vocab import (
    VocabError, choose_tokens, read_vocab_map, trim_model, trim_tokenizer)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

CORPUS = ["the quick brown fox jumps over the lazy dog", "a stitch in time saves nine",
          "pack my box with five dozen liquor jugs", "how vexingly quick daft zebras jump",
          "sphinx of black quartz judge my vow", "the five boxing wizards jump quickly"] * 4
DATA = ["the quick fox jumps", "the lazy dog saves time"]


def bpe(vocab_size: int = 400):
    """A byte-level BPE over CORPUS with two special tokens, as a transformers tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<eos>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    return transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>",
                                                eos_token="<eos>")


def as_json(tokenizer):
    return json.loads(tokenizer.backend_tokenizer.to_str())


def test_the_data_tokenizes_as_before_and_other_text_still_round_trips(tmp_path):
    from finetune.vocab import trimmed_tokenizer

    full = bpe()
    tok = as_json(full)
    used = {i for text in DATA for i in full(text)["input_ids"]}
    total = len(tok["model"]["vocab"])
    kept = choose_tokens(tok, used, keep=total - 60)
    assert len(kept) == total - 60 and used <= set(kept)
    assert {0, 1} <= set(kept)  # the special tokens
    small = trimmed_tokenizer(full, trim_tokenizer(tok, kept), tmp_path / "t")
    assert len(small) == len(kept)
    for text in DATA:  # the same tokens, renumbered
        assert [kept[i] for i in small(text)["input_ids"]] == full(text)["input_ids"]
    other = "zebras quartz wizards 42 ünïcode"
    ids = small(other)["input_ids"]
    assert small.decode(ids) == other and max(ids) < len(kept)
    assert len(ids) >= len(full(other)["input_ids"])  # removed tokens: spelled in pieces


def test_a_ratio_that_would_drop_the_datas_tokens_is_refused():
    full = bpe()
    tok = as_json(full)
    used = {i for text in CORPUS for i in full(text)["input_ids"]}
    with pytest.raises(VocabError, match=r"the data needs .* tokens .* use a ratio of at most"):
        choose_tokens(tok, used, keep=len(used) - 1)
    with pytest.raises(VocabError, match="supports BPE and word-level tokenizers; this one is "
                                         "Unigram"):
        choose_tokens({"model": {"type": "Unigram", "vocab": []}}, used, 10)


def test_trimmed_model_keeps_the_logits_of_the_kept_tokens():
    full = bpe()
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=len(full), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
        pad_token_id=0, eos_token_id=1, bos_token_id=1)).eval()
    ids = full(DATA[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        before = model(input_ids=ids).logits
    kept = choose_tokens(as_json(full), set(ids[0].tolist()), keep=len(full) - 50)
    trim_model(model, kept)
    new = {old: i for i, old in enumerate(kept)}
    with torch.no_grad():
        after = model(input_ids=torch.tensor([[new[i] for i in ids[0].tolist()]])).logits
    torch.testing.assert_close(after, before[..., kept])
    assert model.config.vocab_size == len(kept) == model.lm_head.weight.shape[0]
    assert model.lm_head.weight is model.model.embed_tokens.weight  # still tied
    assert model.config.eos_token_id == new[1]


def _bpe_folder_and_data(tmp_path):
    from tests.finetune.conftest import write_jsonl

    full = bpe()
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=len(full), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
        max_position_embeddings=128, pad_token_id=0, eos_token_id=1, bos_token_id=1))
    folder = tmp_path / "bpe-model"
    model.save_pretrained(str(folder))
    full.save_pretrained(str(folder))
    data = write_jsonl(tmp_path / "train.jsonl",
                       [{"instruction": t, "output": "jumps"} for t in DATA])
    return folder, data, len(full)


def test_prune_vocab_saves_a_model_that_reloads_with_its_map(tmp_path):
    folder, data, total = _bpe_folder_and_data(tmp_path)
    result = prune(PruneConfig(str(folder), str(data), 0.12, what="vocab", batch_size=2),
                   name="tiny-vocab", log=lambda s: None, progress=False)
    r = result.report
    removed = round(0.12 * total)
    assert r.removed == removed and r.params_before - r.params_after == removed * 32
    # the same logits over fewer tokens: the answers can only gain probability
    assert r.magnitude is None and r.loss_pruned <= r.loss_before + 1e-6
    again = transformers.AutoModelForCausalLM.from_pretrained(str(result.folder))
    tok = transformers.AutoTokenizer.from_pretrained(str(result.folder))
    assert again.config.vocab_size == len(tok) == total - removed
    kept = read_vocab_map(result.folder)
    assert len(kept) == total - removed
    assert tok.decode(tok(DATA[1])["input_ids"]) == DATA[1]
    assert result.model.lineage["pruned"] == "vocab"
    # pruning the trimmed model again composes the map to the first model's ids
    again = prune(PruneConfig(str(result.folder), str(data), 0.05, what="vocab", batch_size=2),
                  name="tiny-vocab-2", log=lambda s: None, progress=False)
    second = read_vocab_map(again.folder)
    assert set(second) < set(kept) and len(second) == len(kept) - round(0.05 * len(kept))
    mlp = prune(PruneConfig(str(again.folder), str(data), 0.5, batch_size=2),
                name="tiny-vocab-mlp", log=lambda s: None, progress=False)
    assert read_vocab_map(mlp.folder) == second  # other pruning keeps the map


def test_the_documents_tokens_stay_too(tmp_path):
    folder, data, total = _bpe_folder_and_data(tmp_path)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Notes\n\nsphinx of black quartz judge my vow")
    (docs / "skip.bin").write_bytes(b"\0\1")  # no loader: skipped
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    wanted = set(tok("sphinx of black quartz judge my vow")["input_ids"])
    plain = prune(PruneConfig(str(folder), str(data), 0.14, what="vocab", batch_size=2),
                  name="tiny-v1", log=lambda s: None, progress=False)
    assert not wanted <= set(read_vocab_map(plain.folder))
    result = prune(PruneConfig(str(folder), str(data), 0.14, what="vocab", batch_size=2,
                               keep_tokens_of=str(docs)),
                   name="tiny-v2", log=lambda s: None, progress=False)
    assert wanted <= set(read_vocab_map(result.folder))
    assert result.model.lineage["keep_tokens_of"] == str(docs.resolve())
    with pytest.raises(PruneError, match="--keep-tokens-of .*nope: no such file or folder"):
        prune(PruneConfig(str(folder), str(data), 0.2, what="vocab",
                          keep_tokens_of=str(tmp_path / "nope")))
    with pytest.raises(PruneError, match="no document appkit can read there"):
        prune(PruneConfig(str(folder), str(data), 0.2, what="vocab",
                          keep_tokens_of=str(docs / "skip.bin")))
    with pytest.raises(PruneError, match="--keep-tokens-of chooses which tokens stay; it goes "
                                         "with --what vocab"):
        prune(PruneConfig(str(folder), str(data), 0.2, keep_tokens_of=str(docs)))


def test_prune_vocab_bad_input(tmp_path, capsys):
    folder, data, total = _bpe_folder_and_data(tmp_path)
    with pytest.raises(PruneError, match="the data needs .* use a ratio of at most"):
        prune(PruneConfig(str(folder), str(data), 0.95, what="vocab"))
    with pytest.raises(PruneError, match="--teacher distills logits over the whole vocabulary"):
        prune(PruneConfig(str(folder), str(data), 0.2, what="vocab", teacher="original",
                          recover_steps=2))
    assert main(["finetune", "prune", "--model", str(folder), "--data", str(data), "--ratio",
                 "0.05", "--what", "vocab", "--refit"]) == 2
    assert "removed vocab have none" in capsys.readouterr().err


def test_trimmed_gguf_gives_the_transformers_logits(tmp_path, capsys, monkeypatch):
    """The tiny catalogue's model (word-level transformers tokenizer, SentencePiece-style base
    GGUF with byte tokens): trimmed, then MLP-pruned, then exported whole."""
    np = pytest.importorskip("numpy")
    gguf = pytest.importorskip("gguf")
    from appkit.models.catalogue import get_spec
    from appkit.models.catalogue import ModelSpec, register_model
    from tests.finetune.conftest import write_jsonl
    from tests.finetune.test_distill import TEXTS, WORDS
    from tests.finetune.test_export_pruned import llama_logits
    from tests.helpers import BYTE_TOKENS, save_tiny_llama, write_gguf_metadata

    monkeypatch.chdir(tmp_path)
    # 40 words the data never uses, so there is something to trim besides llama.cpp's bytes
    VOCAB = WORDS + [f"unused{i}" for i in range(40)] + BYTE_TOKENS
    folder = save_tiny_llama(tmp_path / "tiny", VOCAB, seed=0, num_hidden_layers=2,
                             max_position_embeddings=128, initializer_range=0.2)
    base = write_gguf_metadata(tmp_path / "base.gguf", transformers.AutoConfig.from_pretrained(
        str(folder)), "llama", VOCAB)
    register_model(ModelSpec("tiny-gguf", "chat", "gguf", local_path=str(base)), persist=True)
    register_model(ModelSpec("tiny-hf", "chat", "hf", local_path=str(folder),
                             lineage={"base": "tiny-gguf"}), persist=True)
    data = write_jsonl(tmp_path / "train.jsonl", [{"instruction": t, "output": "blue"}
                                                   for t in TEXTS])
    assert main(["finetune", "prune", "--model", "tiny-hf", "--data", str(data), "--ratio",
                 "0.1", "--what", "vocab", "--name", "tiny-trim", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["removed"] == round(0.1 * len(VOCAB))
    kept = read_vocab_map(get_spec("tiny-trim").local_path)
    assert set(BYTE_TOKENS) <= {VOCAB[i] for i in kept}  # llama.cpp spells text in bytes
    assert main(["finetune", "prune", "--model", "tiny-trim", "--data", str(data), "--ratio",
                 "0.5", "--what", "mlp", "--name", "tiny-trim-mlp", "--json"]) == 0
    capsys.readouterr()
    assert main(["finetune", "export", "tiny-trim-mlp", "--quant", "f16", "--json"]) == 0
    path = json.loads(capsys.readouterr().out)["files"]["f16"]
    spec = get_spec("tiny-trim-mlp")
    assert read_vocab_map(spec.local_path) == kept
    fields = gguf.GGUFReader(path).fields
    assert fields["tokenizer.ggml.tokens"].contents() == [VOCAB[i] for i in kept]
    assert len(fields["tokenizer.ggml.scores"].contents()) == len(kept)
    assert fields["tokenizer.ggml.eos_token_id"].contents() == kept.index(VOCAB.index("</s>"))
    model = transformers.AutoModelForCausalLM.from_pretrained(spec.local_path).eval()
    ids = [kept.index(VOCAB.index(w)) for w in ("<s>", "What", "is", "the", "sky", "?")]
    with torch.no_grad():
        expected = model(input_ids=torch.tensor([ids])).logits[0].numpy()
    got, generated = llama_logits(path, ids)
    assert np.abs(got - expected).max() < 0.1 and len(generated) == 4
    # a map that does not fit the weights is refused, naming the file
    from finetune.export import ExportError, write_model_gguf
    from finetune.vocab import write_vocab_map

    write_vocab_map(spec.local_path, kept[:-1])
    with pytest.raises(ExportError, match="appkit_vocab.json does not fit: .* ids for .* token "
                                          "embeddings over the base GGUF base.gguf"):
        write_model_gguf(base, Path(spec.local_path), tmp_path / "x.gguf")
