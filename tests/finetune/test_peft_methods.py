"""PEFT methods beyond LoRA on a tiny random Llama: IA3, prompt tuning and prefix tuning each train
with falling loss and round-trip through save/load; IA3 merges into a GGUF-ready change, soft
prompts are refused by export with a message; the CLI and the profile select the method."""

from __future__ import annotations

import pytest

from appkit.cli import main
from appkit.models.transformers_chat import generate_new_tokens
from finetune.data import Example, encode_example
from finetune.export import ExportError, read_change
from finetune.peft_methods import PEFT_METHODS, gguf_exportable, load_tuned
from finetune.runs import Run
from finetune.trainer import Trainer, TrainConfig, load_weights, save_weights, wrap_peft
from tests.finetune.conftest import write_jsonl

torch = pytest.importorskip("torch")

ROWS = [Example("Who wrote it?", "Ada", input="Ada wrote it."),
        Example("Where is it?", "Paris", input="It is in Paris."),
        Example("When?", "1843", input="It was 1843."),
        Example("What colour?", "blue", input="The sky is blue.")]
LR = {"lora": 5e-2, "ia3": 2e-1, "prompt-tuning": 5e-1, "prefix-tuning": 3e-1}


def _config(method: str, **kw) -> TrainConfig:
    values = dict(base="tiny", data="-", method=method, r=4, alpha=8, dropout=0.0, lr=LR[method],
                  batch_size=4, max_steps=20, save_every=100, warmup=0.1, virtual_tokens=4)
    values.update(kw)
    return TrainConfig(**values)


def _trained(tmp_path, make_tiny, tok, method):
    config = _config(method)
    torch.manual_seed(0)
    model = wrap_peft(make_tiny(0), config)
    encoded = [encode_example(r, tok, chat_template=False, max_tokens=96) for r in ROWS]
    run = Run.create(method, {"method": method, "config": config.to_dict()}, root=tmp_path)
    trainer = Trainer(model, encoded, config, run, pad_id=tok.pad_token_id, progress=False,
                      log=lambda s: None)
    trainer.fit()
    return trainer, encoded


def _logits(model, encoded, pad_id):
    from finetune.trainer import collate

    batch = collate(encoded, pad_id)
    model.eval()
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


@pytest.mark.parametrize("method", ["ia3", "prompt-tuning", "prefix-tuning", "lora"])
def test_each_method_trains_and_round_trips(tmp_path, make_tiny, char_tokenizer, method):
    trainer, encoded = _trained(tmp_path, make_tiny, char_tokenizer, method)
    losses = [r["loss"] for r in trainer.run.history()]
    assert len(losses) == 20
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3, losses  # at least 10% lower
    trained = [p for p in trainer.model.parameters() if p.requires_grad]
    assert 0 < sum(p.numel() for p in trained) < sum(p.numel() for p in make_tiny(0).parameters())
    final = trainer.run.final_dir
    assert (final / "adapter_model.safetensors").exists()
    expected = _logits(trainer.model, encoded, char_tokenizer.pad_token_id)

    fresh = wrap_peft(make_tiny(0), _config(method))  # same base, a new untrained adapter
    assert not torch.allclose(_logits(fresh, encoded, 0), expected, atol=1e-4)
    load_weights(fresh, final, method)
    torch.testing.assert_close(_logits(fresh, encoded, 0), expected, rtol=1e-4, atol=1e-5)

    peft = pytest.importorskip("peft")
    loaded = peft.PeftModel.from_pretrained(make_tiny(0), str(final))
    torch.testing.assert_close(_logits(loaded, encoded, 0), expected, rtol=1e-4, atol=1e-5)

    again = tmp_path / "again"
    save_weights(loaded, again, method)
    assert (again / "adapter_config.json").exists()


def _finished_run(tmp_path, make_tiny, method, *, scale=None):
    """A finished run of ``method`` whose base is the tiny model saved as safetensors."""
    config = _config(method)
    base = make_tiny(0)
    hf_dir = tmp_path / "base-hf"
    base.save_pretrained(str(hf_dir))
    model = wrap_peft(make_tiny(0), config)
    if scale is not None:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "ia3_l" in name:
                    p.fill_(scale)
    run = Run.create(f"{method}-run", {"base": "smollm2-135m", "base_gguf": "base.gguf",
                                       "method": method, "config": config.to_dict(),
                                       "hf_dir": str(hf_dir)}, root=tmp_path)
    save_weights(model, run.final_dir, method)
    run.update(status="finished", step=3)
    return run, base, model


def test_ia3_merges_into_a_weight_change(tmp_path, make_tiny):
    run, base, model = _finished_run(tmp_path, make_tiny, "ia3", scale=1.5)
    change = read_change(run)
    state = base.state_dict()
    assert sorted(change.full) == sorted(
        f"model.layers.{i}.{m}.weight" for i in range(2)
        for m in ("self_attn.k_proj", "self_attn.v_proj", "mlp.down_proj"))
    for key, delta in change.full.items():
        torch.testing.assert_close(torch.from_numpy(delta), state[key] * 0.5)
    # the merged model computes what the adapter does
    merged = make_tiny(0)
    with torch.no_grad():
        for key, delta in change.full.items():
            merged.get_parameter(key).add_(torch.from_numpy(delta))
    ids = torch.tensor([[1, 5, 9, 12, 3]])
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, model(input_ids=ids).logits,
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("method", ["prompt-tuning", "prefix-tuning"])
def test_soft_prompts_are_not_exported_to_gguf(tmp_path, make_tiny, method):
    run, _, _ = _finished_run(tmp_path, make_tiny, method)
    assert not gguf_exportable(method) and gguf_exportable("ia3") and gguf_exportable("full")
    with pytest.raises(ExportError, match="cannot hold a soft prompt.*transformers"):
        read_change(run)


def test_load_tuned_serves_a_soft_prompt_through_transformers(tmp_path, make_tiny,
                                                              monkeypatch):
    run, _, model = _finished_run(tmp_path, make_tiny, "prompt-tuning")
    monkeypatch.setattr("transformers.AutoTokenizer.from_pretrained",
                        lambda *a, **k: "tokenizer")
    loaded, tokenizer = load_tuned(run, log=lambda s: None)
    assert tokenizer == "tokenizer"
    ids = torch.tensor([[1, 5, 9]])
    new = generate_new_tokens(loaded, ids, torch.ones_like(ids), max_new_tokens=3,
                              do_sample=False)
    assert 1 <= new.shape[-1] <= 3


def test_cli_lists_the_methods_and_checks_them(tmp_path, capsys, monkeypatch):
    assert main(["finetune"]) == 0
    out = capsys.readouterr().out
    for method in PEFT_METHODS:
        assert method in out
    data = write_jsonl(tmp_path / "train.jsonl", [{"instruction": "q", "output": "a"}] * 4)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "appkit.toml").write_text('[finetune]\nmethod = "ia3"\n')
    assert main(["finetune", "train", "--base", "not-a-model", "--data", str(data)]) == 2
    assert "not-a-model" in capsys.readouterr().err
    (tmp_path / "appkit.toml").write_text('[finetune]\nmethod = "qlora"\n')
    assert main(["finetune", "train", "--base", "smollm2-135m", "--data", str(data)]) == 2
    assert "finetune.method" in capsys.readouterr().err


def test_train_config_picks_the_profile_method(tmp_path, monkeypatch):
    import argparse

    from appkit.config import Profile
    from finetune.cli import _train_config

    profile = Profile.from_dict({"finetune": {"method": "prefix-tuning", "lora_r": 4,
                                              "virtual_tokens": 7}})
    args = argparse.Namespace(base="b", data="d", r=0, alpha=16, dropout=0.0, targets="",
                              virtual_tokens=0, lr=None, batch_size=1, grad_accum=1, epochs=1.0,
                              max_steps=0, max_minutes=0.0, max_tokens=64, save_every=5, seed=0,
                              threads=0)
    config = _train_config(args, profile.finetune.method, profile)
    assert (config.method, config.r, config.virtual_tokens, config.lr) == (
        "prefix-tuning", 4, 7, 1e-2)
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_export_transformers_registers_a_model_the_app_can_use(tmp_path):
    from appkit.config import Profile
    from appkit.models import make_chat_model
    from appkit.models.catalogue import get_spec
    from appkit.models.transformers_chat import TransformersChatModel
    from finetune.export import export_run
    from tests.models.test_transformers_chat import save_tiny_model

    transformers = pytest.importorskip("transformers")
    hf_dir = save_tiny_model(tmp_path / "base-hf")
    model = wrap_peft(transformers.AutoModelForCausalLM.from_pretrained(str(hf_dir)),
                      _config("prompt-tuning"))
    run = Run.create("soft", {"base": "smollm2-135m", "base_gguf": "base.gguf",
                              "method": "prompt-tuning", "hf_dir": str(hf_dir),
                              "data_hash": "abc"}, root=tmp_path)
    save_weights(model, run.final_dir, "prompt-tuning")
    run.update(status="finished", step=3)
    with pytest.raises(ExportError, match="--mode transformers"):
        export_run(run, quants=("q8_0",))
    result = export_run(run, mode="transformers", name="soft", log=lambda s: None)
    spec = get_spec("soft-transformers")
    assert spec.format == "hf" and spec.local_path == str(hf_dir)
    assert spec.lineage["method"] == "prompt-tuning" and "transformers" in spec.description
    assert (result.folder / "adapter" / "adapter_config.json").exists()
    llm = make_chat_model(Profile(), "soft-transformers", max_tokens=3, temperature=0.0)
    assert isinstance(llm, TransformersChatModel)
    assert llm.adapter_path == spec.lineage["adapter_path"]
    assert isinstance(llm.invoke("What is it ?").content, str)


def test_export_transformers_writes_a_full_run_whole(tmp_path):
    """A full run becomes a whole transformers folder (base config and tokenizer, the run's
    weights) with lineage to its GGUF base, so a model pruned from it can still export a GGUF."""
    from appkit.config import Profile
    from appkit.models import make_chat_model
    from appkit.models.catalogue import get_spec
    from finetune.export import export_run, gguf_base
    from tests.models.test_transformers_chat import save_tiny_model

    transformers = pytest.importorskip("transformers")
    hf_dir = save_tiny_model(tmp_path / "base-hf")
    run = Run.create("whole", {"base": "smollm2-135m", "method": "full", "hf_dir": str(hf_dir),
                               "data_hash": "abc"}, root=tmp_path)
    with pytest.raises(ExportError, match="no final weights"):
        export_run(run, mode="transformers")
    model = transformers.AutoModelForCausalLM.from_pretrained(str(hf_dir))
    with torch.no_grad():
        model.lm_head.weight.mul_(2.0)  # "trained": differs from the base
    model.save_pretrained(str(run.final_dir), safe_serialization=True)
    run.update(status="finished", step=3)
    result = export_run(run, mode="transformers", log=lambda s: None)
    spec = get_spec("whole-transformers")
    folder = result.folder / "transformers"
    assert spec.local_path == str(folder) and spec.lineage["base"] == "smollm2-135m"
    assert "adapter_path" not in spec.lineage and (folder / "config.json").exists()
    again = transformers.AutoModelForCausalLM.from_pretrained(str(folder))
    assert torch.equal(again.lm_head.weight, model.lm_head.weight)
    assert gguf_base(spec)[0].name == "smollm2-135m"
    llm = make_chat_model(Profile(), spec.name, max_tokens=3, temperature=0.0)
    assert isinstance(llm.invoke("What is it ?").content, str)


def test_export_transformers_refuses_other_runs(tmp_path):
    from finetune.export import export_run

    run = Run.create("dpo-run", {"base": "smollm2-135m", "method": "dpo"}, root=tmp_path)
    with pytest.raises(ExportError, match="--mode merged"):
        export_run(run, mode="transformers")


@pytest.mark.parametrize("model_type", ["gemma3_text", "qwen2"])
@pytest.mark.parametrize("method", ["ia3", "prompt-tuning", "prefix-tuning"])
def test_methods_train_on_gemma3_and_qwen2(tmp_path, char_tokenizer, model_type, method):
    """The packaged bases are Gemma 3 (sliding-window cache, 4 norms) and Qwen2 (q/k/v bias)."""
    transformers = pytest.importorskip("transformers")

    def make(seed: int = 0):
        torch.manual_seed(seed)
        cfg = transformers.AutoConfig.for_model(
            model_type, vocab_size=67, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=1, head_dim=8, tie_word_embeddings=True,
            initializer_range=0.2)
        return transformers.AutoModelForCausalLM.from_config(cfg)

    trainer, encoded = _trained(tmp_path, make, char_tokenizer, method)
    losses = [r["loss"] for r in trainer.run.history()]
    # a 4-token soft prompt moves a tiny random Gemma 3 less than a Llama (about 0.1 nats here)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.05, losses
    fresh = wrap_peft(make(0), _config(method))
    load_weights(fresh, trainer.run.final_dir, method)
    torch.testing.assert_close(_logits(fresh, encoded, 0),
                               _logits(trainer.model, encoded, 0), rtol=1e-4, atol=1e-5)
