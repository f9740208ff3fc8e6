"""GGUF export of pruned models: on tiny random Llama, Qwen2 and Gemma 3 decoders with layers, head
groups or MLP channels removed, the written GGUF loads in llama-cpp-python, generates, and gives the
pruned transformers model's logits; the CLI exports a pruned model and registers it with lineage;
what llama.cpp cannot hold, or a model without a GGUF base, is a clear error."""

from __future__ import annotations

import json

import pytest

from appkit.cli import main
from appkit.models.catalogue import ModelSpec, get_spec, register_model
from finetune.export import ExportError, export_pruned, export_run, write_model_gguf
from finetune.prune import prune_model, remove_layers
from tests.finetune.conftest import write_jsonl
from tests.finetune.test_distill import TEXTS, WORDS
from tests.finetune.test_prune import batches, build
from tests.helpers import BYTE_TOKENS, save_tiny_llama, write_gguf_metadata

torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")
gguf = pytest.importorskip("gguf")
llama_cpp = pytest.importorskip("llama_cpp")

VOCAB = WORDS + BYTE_TOKENS  # WORDS for the transformers tokenizer, bytes for llama.cpp's


def write_base_gguf(path, config, arch: str):
    return write_gguf_metadata(path, config, arch, VOCAB)


def tiny(arch: str):
    """A six-layer random decoder (Gemma 3: five sliding-window layers, then a full one) with
    random norms and biases, so Gemma's ``1 + w`` norms and Qwen's biases are exercised."""
    extra = {"query_pre_attn_scalar": 8} if arch == "gemma3" else {}  # = head_dim, as in Gemma 3
    model = build(arch, vocab_size=len(VOCAB), num_hidden_layers=6, **extra).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith(".bias"):
                p.normal_(0, 0.3)
    return model


def llama_logits(path, ids):
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, logits_all=True, n_threads=1,
                          verbose=False)
    llm.eval(ids)
    logits = np.array(llm.scores[:len(ids)])
    generated = []
    for tok in llm.generate(ids[:3], temp=0.0, top_k=1):
        generated.append(tok)
        if len(generated) == 4:
            break
    llm.close()
    return logits, generated


# llama.cpp's qwen2 cannot hold fewer heads: test_qwen2_heads_are_refused
CASES = [(arch, what) for arch in ("llama", "qwen2", "gemma3")
         for what in ("layers", "heads", "mlp") if (arch, what) != ("qwen2", "heads")]


@pytest.mark.parametrize("arch,what", CASES)
def test_pruned_gguf_gives_the_transformers_logits(tmp_path, arch, what):
    model = tiny(arch)
    base = write_base_gguf(tmp_path / "base.gguf", model.config, arch)
    if what == "layers":
        # the first two go, so Gemma 3's full-attention layer moves from index 5 to 3 and only
        # the per-layer sliding-window pattern keeps it full in llama.cpp
        remove_layers(model, [0, 1])
    else:
        prune_model(model, batches(), what, 0.5)
    model.save_pretrained(str(tmp_path / "pruned"))
    out = write_model_gguf(base, tmp_path / "pruned", tmp_path / "pruned.gguf", log=lambda s: None)

    reader = gguf.GGUFReader(str(out))
    field = reader.fields
    c = model.config
    assert field[f"{arch}.block_count"].contents() == c.num_hidden_layers
    assert field[f"{arch}.feed_forward_length"].contents() == c.intermediate_size
    assert field[f"{arch}.attention.head_count_kv"].contents() == c.num_key_value_heads
    assert field["tokenizer.ggml.tokens"].contents() == VOCAB

    ids = [1] + np.random.RandomState(0).randint(4, len(VOCAB), 23).tolist()
    with torch.no_grad():
        expected = model(input_ids=torch.tensor([ids])).logits[0].numpy()
    got, generated = llama_logits(out, ids)
    assert (got.argmax(-1) == expected.argmax(-1)).mean() >= 0.95
    assert np.abs(got - expected).max() < 0.1  # F16 weights; logits span about +-4
    assert len(generated) == 4


def test_qwen2_heads_are_refused(tmp_path):
    model = tiny("qwen2")
    base = write_base_gguf(tmp_path / "base.gguf", model.config, "qwen2")
    prune_model(model, batches(), "heads", 0.5)
    model.save_pretrained(str(tmp_path / "pruned"))
    with pytest.raises(ExportError, match=r"qwen2 models need as many query.*--what layers or mlp"):
        write_model_gguf(base, tmp_path / "pruned", tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def _tiny_catalogue(tmp_path):
    """A tiny transformers model registered with a GGUF base, as a distilled student is."""
    folder = save_tiny_llama(tmp_path / "tiny", VOCAB, seed=0, num_hidden_layers=4,
                             max_position_embeddings=128, initializer_range=0.2)
    config = pytest.importorskip("transformers").AutoConfig.from_pretrained(str(folder))
    base = write_base_gguf(tmp_path / "base.gguf", config, "llama")
    register_model(ModelSpec("tiny-gguf", "chat", "gguf", local_path=str(base)), persist=True)
    register_model(ModelSpec("tiny-hf", "chat", "hf", local_path=str(folder),
                             lineage={"base": "tiny-gguf"}), persist=True)
    return write_jsonl(tmp_path / "train.jsonl", [{"instruction": t, "output": "blue"}
                                                   for t in TEXTS])


def test_cli_exports_a_pruned_model_and_registers_it_with_lineage(tmp_path, capsys,
                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = _tiny_catalogue(tmp_path)
    assert main(["finetune", "prune", "--model", "tiny-hf", "--data", str(data), "--ratio", "0.5",
                 "--what", "mlp", "--name", "tiny-pruned", "--json"]) == 0
    capsys.readouterr()
    assert main(["finetune", "export", "tiny-pruned", "--quant", "f16,q8_0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["models"] == ["tiny-pruned-q8_0", "tiny-pruned-f16"]
    spec = get_spec("tiny-pruned-q8_0")
    lin = spec.lineage
    assert spec.format == "gguf" and spec.local_path == out["files"]["q8_0"]
    assert lin["base"] == "tiny-gguf" and lin["from"] == "tiny-pruned"
    assert lin["pruned"] == "mlp" and lin["ratio"] == 0.5 and lin["quant"] == "q8_0"
    assert lin["params_after"] < lin["params_before"]
    assert spec.size < get_spec("tiny-pruned-f16").size
    reader = gguf.GGUFReader(spec.local_path)
    assert reader.fields["llama.feed_forward_length"].contents() == 32
    # the transformers model stays beside the GGUFs
    assert get_spec("tiny-pruned").format == "hf"
    assert main(["finetune", "export", "tiny-pruned", "--mode", "lora"]) == 2
    assert "exported whole" in capsys.readouterr().err


def test_a_model_pruned_from_a_folder_has_no_gguf_to_export_from(tmp_path):
    spec = register_model(ModelSpec("from-folder", "chat", "hf", local_path=str(tmp_path),
                                    lineage={"base": str(tmp_path), "pruned": "mlp"}))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ExportError, match="does not descend from a catalogue GGUF model"):
        export_pruned(spec)
    with pytest.raises(ExportError, match="unknown quantization 'q2'"):
        export_run("from-folder", quants=("q2",))
