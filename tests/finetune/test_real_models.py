"""Real-model tests on the packaged SmolLM2-135M (marked slow): training lowers the loss and
resumes, and exported GGUFs (merged and LoRA) load in llama-cpp-python and generate the same greedy
tokens as the torch model, then flow back into the app through the catalogue."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from finetune.data import Example, write_rows

pytestmark = pytest.mark.slow
torch = pytest.importorskip("torch")
pytest.importorskip("llama_cpp")

PROMPT = "The capital of France is"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private appkit cache that shares only the converted bases with the real one (the
    conversion takes a while), so runs and registered models stay out of the user's cache."""
    from appkit.models.catalogue import cache_dir

    real = cache_dir().parent / "finetune" / "bases"
    real.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("APPKIT_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache" / "finetune").mkdir(parents=True)
    os.symlink(real, tmp_path / "cache" / "finetune" / "bases")
    return tmp_path / "cache"


def _data(tmp_path: Path) -> Path:
    rows = [Example("What colour is the sky?", "Blue.", input="The sky is blue."),
            Example("Who wrote it?", "Ada.", input="Ada wrote the note.")]
    return write_rows(rows, tmp_path / "train.jsonl")


def test_lora_on_smollm2_lowers_the_loss_and_resumes(tmp_path, cache):
    from finetune.runs import Run
    from finetune.trainer import TrainConfig, train

    config = TrainConfig(base="smollm2-135m", data=str(_data(tmp_path)), lr=2e-3, batch_size=2,
                         max_steps=8, save_every=2, max_tokens=96, warmup=0.0, threads=1)
    first = train(config, name="smol", progress=False, stop_after=3, log=lambda s: None)
    assert first.status == "interrupted" and first.step == 3
    done = train(resume="smol", progress=False, log=lambda s: None)
    assert done.status == "finished" and done.step == 8
    losses = [r["loss"] for r in Run.open("smol").history()]
    assert [r["step"] for r in Run.open("smol").history()] == list(range(1, 9))
    assert losses[-1] < 0.7 * losses[0]


def _perturbed_run(name: str, std: float):
    """A finished LoRA run over SmolLM2 whose adapter is random (a clear, known change)."""
    from finetune.runs import Run
    from finetune.trainer import TrainConfig, build_model, save_weights

    config = TrainConfig(base="smollm2-135m", data="-", threads=1)
    model, base = build_model(config, log=lambda s: None)
    torch.manual_seed(1)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, std)
    run = Run.create(name, {"base": base.spec.name, "base_gguf": str(base.gguf_path),
                            "method": "lora", "hf_dir": str(base.hf_dir), "data_hash": "x",
                            "config": config.to_dict()})
    save_weights(model, run.final_dir, "lora")
    run.update(status="finished", step=1)
    ids = base.tokenizer(PROMPT).input_ids
    model.eval()
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False)
        with model.disable_adapter():
            plain = model.generate(torch.tensor([ids]), max_new_tokens=8, do_sample=False)
    return run, ids, out[0, len(ids):].tolist(), plain[0, len(ids):].tolist()


def _greedy(path: Path, ids: list[int], lora: Path | None = None, n: int = 8) -> list[int]:
    import llama_cpp

    kwargs = {"model_path": str(path), "n_ctx": 128, "n_threads": 1, "verbose": False}
    if lora:
        kwargs["lora_path"] = str(lora)
    llama = llama_cpp.Llama(**kwargs)
    out = []
    for tok in llama.generate(ids, temp=0.0, top_k=1):
        out.append(tok)
        if len(out) == n:
            break
    llama.close()
    return out


def test_merged_and_lora_gguf_generate_the_torch_models_tokens(cache):
    from finetune.export import export_run

    run, ids, torch_tokens, base_tokens = _perturbed_run("strong", std=0.3)
    assert torch_tokens != base_tokens  # the adapter really changes the output
    merged = export_run(run, quants=("f16",), name="strong", log=lambda s: None)
    lora = export_run(run, mode="lora", name="strong", log=lambda s: None)
    assert _greedy(merged.files["f16"], ids) == torch_tokens
    # Exact tokens need an unquantized base: over the packaged Q4_1 file llama.cpp also quantizes
    # the activations, and with this strong an adapter the first token depends on the CPU's
    # kernels (AVX2 and AVX-512 machines both differed). An adapter-free run exported to F16 is
    # that base.
    zero, *_ = _perturbed_run("zero", std=0.0)
    f16_base = export_run(zero, quants=("f16",), name="zero", log=lambda s: None).files["f16"]
    assert _greedy(f16_base, ids, lora.files["lora"]) == torch_tokens
    packaged = Path(run.info["base_gguf"])
    assert _greedy(packaged, ids, lora.files["lora"]) != _greedy(packaged, ids)  # applied there too


def test_quantized_export_loads_generates_and_flows_into_the_app(cache, capsys):
    from appkit.cli import main
    from appkit.config import ChatConfig, Profile
    from appkit.models import make_chat_model
    from finetune.export import export_run

    run, ids, torch_tokens, _ = _perturbed_run("mild", std=0.05)
    result = export_run(run, quants=("q8_0", "q4_k_m"), name="mild", log=lambda s: None)
    q8 = _greedy(result.files["q8_0"], ids)
    assert q8[:4] == torch_tokens[:4]  # equal up to quantization
    assert result.files["q4_k_m"].stat().st_size < result.files["q8_0"].stat().st_size
    assert main(["models", "--json"]) == 0
    listed = {m["name"]: m for m in __import__("json").loads(capsys.readouterr().out)}
    assert listed["mild-q4_k_m"]["lineage"]["run"] == "mild"
    llm = make_chat_model(Profile(chat=ChatConfig(model="mild-q4_k_m", n_ctx=256)), max_tokens=8)
    assert llm.invoke("Say hello.").text.strip()


def test_dpo_continues_the_lora_adapter(cache):
    from safetensors.torch import load_file

    from finetune.dpo import PreferencePair, train_dpo

    parent, *_ = _perturbed_run("sft", std=0.01)
    pairs = [PreferencePair("What colour is the sky?", "The documents do not say.", "Blue.",
                            context="Ada wrote the note.", kind="unanswerable"),
             PreferencePair("Who wrote it?", "Ada.", "The documents do not say.",
                            context="Ada wrote the note.", kind="answerable")]
    run = train_dpo(parent, pairs, max_steps=2, batch_size=2, lr=1e-3, max_tokens=128,
                    threads=1, log=lambda s: None)
    assert run.info["status"] == "finished" and run.info["parent"] == "sft"
    assert [r["step"] for r in run.history()] == [1, 2]
    before = load_file(str(parent.final_dir / "adapter_model.safetensors"))
    after = load_file(str(run.final_dir / "adapter_model.safetensors"))
    assert before.keys() == after.keys()  # one adapter, no leftover reference copy
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_pruned_smollm2_exports_to_a_gguf_with_the_same_logits(tmp_path, cache):
    """27% of SmolLM2's parameters pruned (MLP channels), exported whole: the F16 GGUF gives the
    pruned torch model's logits, and the Q4_K_M file is really quantized (MLPs in whole
    blocks)."""
    import llama_cpp
    import numpy as np

    from finetune.export import export_run
    from finetune.prune import PruneConfig, prune

    config = PruneConfig("smollm2-135m", str(_data(tmp_path)), 0.45, what="mlp", samples=2,
                         batch_size=2, max_tokens=64, threads=1)
    result = prune(config, name="smol-pruned", log=lambda s: None, progress=False,
                   compare_magnitude=False)
    assert result.report.reduction > 0.25
    exported = export_run("smol-pruned", quants=("f16", "q4_k_m"), log=lambda s: None)
    files = exported.files
    assert files["q4_k_m"].stat().st_size < 0.45 * files["f16"].stat().st_size
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(result.folder))
    model = transformers.AutoModelForCausalLM.from_pretrained(str(result.folder)).eval()
    ids = tok(PROMPT + " Paris. It is known for the Eiffel Tower and its museums.").input_ids
    with torch.no_grad():
        expected = model(input_ids=torch.tensor([ids])).logits[0].numpy()
    llm = llama_cpp.Llama(model_path=str(files["f16"]), n_ctx=128, logits_all=True,
                          n_threads=1, verbose=False)
    llm.eval(ids)
    got = np.array(llm.scores[:len(ids)])
    llm.close()
    assert (got.argmax(-1) == expected.argmax(-1)).mean() >= 0.95
    assert np.abs(got - expected).max() < 0.5  # F16 weights; logits span about +-30


def test_smollm2_with_a_trimmed_vocabulary_tokenizes_and_scores_the_same_in_llama_cpp(
        tmp_path, cache):
    """Half of SmolLM2's 49,152 tokens trimmed away, exported whole: llama.cpp's BPE over the
    trimmed tokens and merges splits text exactly as the trimmed transformers tokenizer does
    (text the rows never used included), and the F16 GGUF gives the torch model's logits."""
    import llama_cpp
    import numpy as np
    import transformers

    from finetune.export import export_run
    from finetune.prune import PruneConfig, prune

    config = PruneConfig("smollm2-135m", str(_data(tmp_path)), 0.5, what="vocab", samples=2,
                         batch_size=2, max_tokens=64, threads=1)
    result = prune(config, name="smol-trim", log=lambda s: None, progress=False)
    assert result.report.removed == 24_576 and result.report.reduction > 0.10
    f16 = export_run("smol-trim", quants=("f16",), log=lambda s: None).files["f16"]
    tok = transformers.AutoTokenizer.from_pretrained(str(result.folder))
    llm = llama_cpp.Llama(model_path=str(f16), n_ctx=128, logits_all=True, n_threads=1,
                          verbose=False)
    for text in (PROMPT + " Paris.", "Qu'est-ce que c'est? 日本語, xylophones & 3.14159"):
        ids = tok(text, add_special_tokens=False).input_ids
        assert llm.tokenize(text.encode(), add_bos=False) == ids
        assert llm.detokenize(ids).decode() == text
    ids = tok(PROMPT + " Paris. It is known for the Eiffel Tower.").input_ids
    model = transformers.AutoModelForCausalLM.from_pretrained(str(result.folder)).eval()
    with torch.no_grad():
        expected = model(input_ids=torch.tensor([ids])).logits[0].numpy()
    llm.eval(ids)
    got = np.array(llm.scores[:len(ids)])
    llm.close()
    assert got.shape[1] == 24_576
    assert (got.argmax(-1) == expected.argmax(-1)).mean() >= 0.95
    assert np.abs(got - expected).max() < 0.5


def test_a_fine_tuned_smollm2_is_pruned_by_distillation_and_exported(tmp_path, cache):
    """The README's order: a full run registered as a transformers model, pruned with recovery
    by distillation from itself, keeps its lineage to the GGUF base and exports to Q4_K_M."""
    import llama_cpp

    from appkit.models.catalogue import get_spec
    from finetune.export import export_run
    from finetune.prune import PruneConfig, prune
    from finetune.trainer import TrainConfig, train

    data = str(_data(tmp_path))
    train(TrainConfig(base="smollm2-135m", data=data, method="full", lr=1e-5, batch_size=2,
                      max_steps=1, max_tokens=64, save_every=1, threads=1), name="qa-full",
          log=lambda s: None, progress=False)
    tuned = export_run("qa-full", mode="transformers", log=lambda s: None).models[0]
    assert tuned.name == "qa-full-transformers" and tuned.lineage["base"] == "smollm2-135m"
    config = PruneConfig(tuned.name, data, 0.45, what="mlp", samples=2, batch_size=2,
                         max_tokens=64, recover_steps=2, teacher="original", threads=1)
    result = prune(config, name="qa-pruned", log=lambda s: None, progress=False,
                   compare_magnitude=False)
    lineage = get_spec("qa-pruned").lineage
    assert lineage["base"] == "qa-full-transformers" and lineage["recovery"].startswith("logit")
    assert len(result.run.history()) == 2
    q4 = export_run("qa-pruned", quants=("q4_k_m",), log=lambda s: None).files["q4_k_m"]
    llm = llama_cpp.Llama(model_path=str(q4), n_ctx=128, n_threads=1, verbose=False)
    assert llm.create_completion(PROMPT, max_tokens=4)["choices"][0]["text"] is not None
    llm.close()
