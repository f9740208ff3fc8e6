"""``appkit plan``: parameter counts checked by hand and against instantiated models, memory at each
precision, trainable parameters against peft's own count, GGUF metadata, the CLI and its errors."""

from __future__ import annotations

import json

import pytest

from appkit.cli import main
from finetune.plan import (
    RUNTIME_BYTES, ModelShape, PlanError, count_params, inference_memory, make_plan,
    measure_steps, resolve_shape, shape_from_config, shape_from_gguf, trainable_params,
    training_memory)

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# vocab 100, width 16, MLP 48, 2 layers, 4 heads of 4, 2 KV heads
LLAMA = {"model_type": "llama", "vocab_size": 100, "hidden_size": 16, "intermediate_size": 48,
         "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
         "max_position_embeddings": 128, "tie_word_embeddings": False}


def test_llama_parameter_count_by_hand():
    # embeddings 100*16 = 1600; per layer: q 16*16 + k 16*8 + v 16*8 + o 16*16 = 768,
    # MLP 3*16*48 = 2304, two norms 32 -> 3104; two layers 6208; final norm 16; head 1600
    assert count_params(LLAMA) == 1600 + 6208 + 16 + 1600 == 9424
    assert count_params({**LLAMA, "tie_word_embeddings": True}) == 9424 - 1600


def _numel(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("config", [
    LLAMA,
    {**LLAMA, "tie_word_embeddings": True},
    {**LLAMA, "model_type": "qwen2", "tie_word_embeddings": True},
    {**LLAMA, "model_type": "gemma3_text", "head_dim": 8, "tie_word_embeddings": True},
    {**LLAMA, "model_type": "mistral", "head_dim": 8},
], ids=["llama", "llama-tied", "qwen2", "gemma3", "mistral"])
def test_decoder_formula_matches_the_instantiated_model(config):
    cfg = transformers.AutoConfig.for_model(**config)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    assert count_params({**cfg.to_dict(), **config}) == _numel(model)


def test_bert_formula_matches_the_instantiated_model():
    config = {"model_type": "bert", "vocab_size": 120, "hidden_size": 16, "intermediate_size": 40,
              "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 64,
              "type_vocab_size": 2}
    model = transformers.BertModel(transformers.BertConfig(**config))
    assert count_params(config) == _numel(model)
    shape = shape_from_config(config)
    assert not shape.decoder and inference_memory(shape, 4096)["fp32"]["kv_cache"] == 0
    plan = make_plan(shape, tokens=1000, measure=True)  # encoders are sized, not timed
    assert not plan.measured and "an encoder" in plan.render()


def test_memory_at_each_precision_by_hand():
    shape = shape_from_config(LLAMA, name="tiny")
    mem = inference_memory(shape, n_ctx=1000)
    kv16 = 2 * 2 * 1000 * 8 * 2  # K and V, 2 layers, 1000 positions, 2 heads x 4 dims, fp16
    assert mem["fp32"] == {"weights": 9424 * 4, "kv_cache": kv16 * 2, "total": 9424 * 4 + kv16 * 2}
    assert mem["fp16"]["total"] == 9424 * 2 + kv16
    assert mem["int8"]["total"] == 9424 + kv16
    assert mem["int4"]["total"] == 4712 + kv16


@pytest.mark.parametrize("method", ["lora", "ia3", "prompt-tuning", "prefix-tuning"])
def test_trainable_parameters_match_peft(method):
    from finetune.peft_methods import peft_config

    peft = pytest.importorskip("peft")
    cfg = transformers.AutoConfig.for_model(**LLAMA)
    model = transformers.AutoModelForCausalLM.from_config(cfg)
    wrapped = peft.get_peft_model(model, peft_config(method, model, r=4, virtual_tokens=5))
    trainable, _ = wrapped.get_nb_trainable_parameters()
    shape = shape_from_config(LLAMA)
    assert trainable_params(shape, method, r=4, virtual_tokens=5) == trainable


def test_training_memory_parts():
    shape = shape_from_config(LLAMA)
    full = training_memory(shape, "full", batch=1, seq=8)
    assert full["weights"] == full["gradients"] == 4 * 9424 and full["optimizer"] == 8 * 9424
    assert full["runtime"] == RUNTIME_BYTES
    assert full["total"] == 16 * 9424 + full["activations"] + RUNTIME_BYTES
    lora = training_memory(shape, "lora", batch=1, seq=8, r=4)
    t = trainable_params(shape, "lora", r=4)
    assert lora["gradients"] == 4 * t and lora["weights"] == 4 * 9424 + 4 * t
    assert lora["activations"] == full["activations"] < training_memory(
        shape, "full", batch=2, seq=8)["activations"]
    prompt = training_memory(shape, "prompt-tuning", batch=1, seq=8, virtual_tokens=4)
    assert prompt["activations"] > full["activations"]  # the soft prompt lengthens the sequence


def test_tokens_flops_and_recommendation():
    shape = ModelShape("toy", "llama", 1_000_000, 2, 64, 256, 4, 4, 16, 1000, 512)
    plan = make_plan(shape, tokens=100_000, measure=False, memory_available=2**34)
    assert plan.compute_optimal_tokens == 20_000_000
    assert plan.flops["full"] == 6 * 1_000_000 * 100_000
    assert plan.flops["peft"] == 4 * 1_000_000 * 100_000  # no weight gradients of the base
    assert plan.flops["pretrain"] == 6 * 1_000_000 * 20_000_000
    assert plan.seconds["full"] is None and not plan.measured
    assert plan.recommendation == "peft"
    assert make_plan(shape, tokens=500, measure=False).recommendation == "prompt"
    assert make_plan(shape, tokens=2_000_000, measure=False,
                     memory_available=2**34).recommendation == "full"
    assert make_plan(shape, tokens=30_000_000, measure=False,
                     memory_available=2**34).recommendation == "pretrain"
    small = make_plan(shape, tokens=100_000, measure=False, memory_available=1024)
    assert small.recommendation == "prompt" and "this machine has" in small.reasons[-1]


def test_measured_steps_give_times():
    shape = shape_from_config(LLAMA)
    steps = measure_steps(shape, ("full", "lora", "prompt-tuning"), seq=8, steps=1, threads=1)
    assert set(steps) == {"full", "lora", "prompt-tuning"} and all(s > 0 for s in steps.values())
    plan = make_plan(shape, tokens=50_000, seq=8, measure=True, steps=1, threads=1)
    assert plan.measured and plan.seconds["full"] > 0 and plan.seconds["pretrain"] > 0


def _write_gguf(path, *, drop: str = ""):
    gguf = pytest.importorskip("gguf")
    import numpy as np

    w = gguf.GGUFWriter(str(path), "llama")
    values = {"block_count": 2, "context_length": 256, "embedding_length": 16,
              "feed_forward_length": 48, "attention.head_count": 4,
              "attention.head_count_kv": 2}
    for key, value in values.items():
        if key != drop:
            w.add_uint32(f"llama.{key}", value)
    w.add_token_list([f"t{i}" for i in range(100)])
    w.add_tensor("token_embd.weight", np.zeros((100, 16), dtype=np.float32))
    w.add_tensor("blk.0.attn_q.weight", np.zeros((16, 16), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_gguf_metadata(tmp_path):
    shape = shape_from_gguf(_write_gguf(tmp_path / "tiny.gguf"))
    assert (shape.layers, shape.hidden, shape.ffn, shape.heads, shape.kv_heads, shape.head_dim,
            shape.vocab, shape.context) == (2, 16, 48, 4, 2, 4, 100, 256)
    assert shape.params == 100 * 16 + 16 * 16 and shape.file_bytes > 0
    assert shape.config["tie_word_embeddings"] is True  # no output.weight tensor


def test_gguf_missing_metadata_is_named(tmp_path):
    with pytest.raises(PlanError, match=r"lacks llama\.embedding_length"):
        shape_from_gguf(_write_gguf(tmp_path / "bad.gguf", drop="embedding_length"))


def test_cli_no_measure(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "tiny"
    transformers.AutoConfig.for_model(**LLAMA).save_pretrained(folder)
    assert main(["plan", str(folder), "--tokens", "5e4", "--no-measure", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["model"]["params"] == 9424 and data["measured"] is False
    assert data["inference"]["fp16"]["kv_cache"] == 2 * 2 * 4096 * 8 * 2  # default n_ctx 4096
    assert [r["approach"] for r in data["approaches"]][:2] == ["pre-training",
                                                               "prompt engineering"]
    assert data["recommendation"] == "full"  # 50k tokens for 9k parameters
    data_file = tmp_path / "train.jsonl"
    data_file.write_text(json.dumps({"instruction": "q" * 400, "output": "a" * 400}) + "\n")
    assert main(["plan", str(folder), "--data", str(data_file), "--no-measure"]) == 0
    out = capsys.readouterr().out
    assert "not measured (--no-measure)" in out and "recommendation: prompt engineering" in out
    assert "RLHF" in out and "compression" in out and "201 tokens" in out


def test_cli_model_it_cannot_size(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text(json.dumps({"model_type": "llama",
                                                                 "vocab_size": 10}))
    assert main(["plan", str(tmp_path / "broken"), "--no-measure"]) == 2
    err = capsys.readouterr().err
    assert "hidden_size (embedding width)" in err and "num_hidden_layers" in err
    assert "Traceback" not in err
    assert main(["plan", "no-such-model", "--no-measure"]) == 2
    assert "neither a catalogue model" in capsys.readouterr().err


def test_resolve_shape_of_a_config_file(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(LLAMA))
    assert resolve_shape(str(tmp_path / "config.json")).params == 9424
