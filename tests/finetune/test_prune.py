"""Pruning on tiny random decoders: each structure at ratio 0.5 reloads with transformers with the
expected config and parameter count and gives logits of the right shape; importance picks what
matters least (an identity layer, a silenced head group, dead channels); refitting the reading
layer reproduces the original output better than dropping inputs; recovery lowers the loss;
magnitude pruning zeroes the asked share and removes nothing; bad input is a one-line error; the
CLI prunes end to end and registers the model with lineage."""

from __future__ import annotations

import json

import pytest

from appkit.cli import main
from finetune.data import DataError
from finetune.prune import (
    PruneConfig, PruneError, aligned, count_params, head_dim, input_grams, magnitude_prune, prune,
    prune_model, refit_weight)
from tests.finetune.conftest import write_jsonl
from tests.finetune.test_distill import TEXTS, WORDS, save_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

SHAPE = dict(vocab_size=67, hidden_size=32, intermediate_size=64, num_hidden_layers=4,
             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
             tie_word_embeddings=True, initializer_range=0.2)


def build(arch: str = "llama", seed: int = 0, **overrides):
    torch.manual_seed(seed)
    values = {**SHAPE, **overrides}
    if arch == "qwen2":
        return transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**values))
    if arch == "gemma3":
        return transformers.Gemma3ForCausalLM(transformers.Gemma3TextConfig(
            **{"head_dim": 8, **values}, sliding_window=16))
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**values))


def batches(seed: int = 0, n: int = 2):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(3, 67, (4, 16), generator=g)
        out.append({"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids})
    return out


EXPECTED = {"layers": dict(num_hidden_layers=2), "mlp": dict(intermediate_size=32),
            "heads": dict(num_attention_heads=2, num_key_value_heads=1)}


@pytest.mark.parametrize("arch", ["llama", "qwen2", "gemma3"])
@pytest.mark.parametrize("what", ["layers", "heads", "mlp"])
def test_pruned_model_reloads_smaller(tmp_path, what, arch):
    model = build(arch)
    removed = prune_model(model, batches(), what, 0.5)
    assert len(removed) == (2 if what == "layers" else 4)
    model.save_pretrained(str(tmp_path / "m"))
    again = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "m"))
    c = again.config
    for key, value in EXPECTED[what].items():
        assert getattr(c, key) == value, key
    assert head_dim(again) == 8 and c.hidden_size == 32
    if getattr(c, "layer_types", None):
        assert len(c.layer_types) == c.num_hidden_layers
    # the same architecture built from the smaller config has exactly as many parameters
    reference = build(arch, **EXPECTED[what], **({"head_dim": 8} if what == "heads" else {}))
    assert count_params(again) == count_params(model) == count_params(reference)
    assert count_params(again) < count_params(build(arch))
    ids = batches()[0]["input_ids"]
    with torch.no_grad():
        logits = again(input_ids=ids).logits
        assert logits.shape == (4, 16, 67)
        torch.testing.assert_close(logits, model.eval()(input_ids=ids).logits)
        # the KV cache works: layers were renumbered
        out = again.generate(ids[:1, :4], max_new_tokens=3, min_new_tokens=3,
                             do_sample=False)
        assert out.shape == (1, 7)


def test_mlp_width_is_kept_in_quantization_blocks():
    # SmolLM2's 1536 channels at 0.45: 832 kept (26 blocks of 32), not 845, which llama.cpp
    # could not quantize
    assert aligned(691, 1536) == 704 and aligned(5, 1536) == 32 and aligned(1530, 1536) == 1504
    assert aligned(16, 64) == 16 and aligned(100, 300) == 100  # narrow, or not whole blocks
    model = build(intermediate_size=256)
    prune_model(model, batches(), "mlp", 0.3)
    assert model.config.intermediate_size == 192
    assert all(layer.mlp.down_proj.in_features == 192 for layer in model.model.layers)


def test_importance_removes_an_identity_layer_first():
    model = build()
    layer = model.model.layers[2]
    for proj in (layer.self_attn.o_proj, layer.mlp.down_proj):
        proj.weight.data.zero_()  # the layer adds nothing to the residual stream
    assert prune_model(model, batches(), "layers", 0.25) == [2]


def test_importance_removes_a_silenced_head_group_and_dead_channels():
    model = build()
    for layer in model.model.layers:
        layer.self_attn.o_proj.weight.data[:, 16:] = 0  # query heads 2, 3: key/value group 1
    assert prune_model(model, batches(), "heads", 0.5) == [[1]] * 4
    model = build()
    dead = [[c for c in range(64) if c % 4 == i % 4 or c % 4 == (i + 1) % 4] for i in range(4)]
    for layer, channels in zip(model.model.layers, dead):
        layer.mlp.down_proj.weight.data[:, channels] = 0
    assert prune_model(model, batches(), "mlp", 0.5) == dead


def test_refit_solves_the_kept_columns_by_least_squares():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=g)
    x[:, 4] = x[:, 0] - 2 * x[:, 1]  # a removed input that the kept ones carry
    x[:, 5] = 3 * x[:, 2]
    w = torch.randn(3, 6, generator=g)
    keep = torch.tensor([0, 1, 2, 3])
    fitted = refit_weight(w, x.T @ x, keep, ridge=0.0)
    torch.testing.assert_close(x[:, keep] @ fitted.T, x @ w.T, atol=1e-4, rtol=1e-4)
    assert fitted.shape == (3, 4) and fitted.dtype == w.dtype
    # the ridge only shrinks the fit
    assert torch.allclose(refit_weight(w, x.T @ x, keep, ridge=1e-8), fitted, atol=1e-3)


def _first_layer_output(model, what, ids):
    """The first layer's MLP (or attention) output: its input is unchanged by pruning."""
    layer = model.model.layers[0]
    part = layer.mlp if what == "mlp" else layer.self_attn.o_proj
    seen = {}
    hook = part.register_forward_hook(lambda m, a, out: seen.setdefault("out", out))
    with torch.no_grad():
        model.eval()(input_ids=ids)
    hook.remove()
    return seen["out"]


@pytest.mark.parametrize("what", ["mlp", "heads"])
def test_refit_reproduces_the_original_output_better_than_dropping(what):
    data = batches(n=4)
    ids = torch.cat([b["input_ids"] for b in data])  # least squares is best over all its rows
    want = _first_layer_output(build(), what, ids)
    errors = {}
    for refit in (False, True):
        model = build()
        removed = prune_model(model, data, what, 0.5, refit=refit)
        errors[refit] = float((_first_layer_output(model, what, ids) - want).norm())
        if refit:
            assert removed == prune_model(build(), data, what, 0.5)  # the same choice
            assert model.config.intermediate_size == (32 if what == "mlp" else 64)
    assert errors[True] < 0.9 * errors[False], errors


def test_input_grams_count_real_tokens_only():
    model = build()
    data = batches(n=1)
    padded = {**data[0], "attention_mask": data[0]["attention_mask"].clone()}
    padded["attention_mask"][:, 8:] = 0
    full, half = input_grams(model, data, "down_proj"), input_grams(model, [padded], "down_proj")
    assert full[0].shape == (64, 64) and len(full) == 4
    assert float(half[0].trace()) < float(full[0].trace())


def _folder_and_data(tmp_path):
    folder = save_model(tmp_path / "tiny", WORDS, seed=0)
    data = write_jsonl(tmp_path / "train.jsonl",
                       [{"instruction": t, "output": "blue"} for t in TEXTS])
    return folder, data


def test_recovery_lowers_the_loss(tmp_path):
    folder, data = _folder_and_data(tmp_path)
    config = PruneConfig(str(folder), str(data), 0.5, what="mlp", recover_steps=15, lr=1e-2,
                         batch_size=4)
    result = prune(config, name="tiny-recovered", log=lambda s: None, progress=False)
    r = result.report
    assert r.loss_after < r.loss_pruned, r
    losses = [h["loss"] for h in result.run.history()]
    assert len(losses) == 15 and losses[-1] < losses[0]
    assert result.model.lineage["recovery_steps"] == 15
    assert result.run.checkpoints() == []  # not resumable through prune: not kept
    assert r.magnitude["zeroed"] > 0 and r.magnitude["params"] == r.params_before


def test_recovery_by_distillation_from_the_original_moves_toward_it(tmp_path):
    from finetune.data import encode_example
    from finetune.distill import load_causal_lm, mean_divergence, read_prompts

    folder, data = _folder_and_data(tmp_path)
    # without the refit, which already brings the cut close to the original on these rows
    settings = dict(what="mlp", lr=1e-2, batch_size=4, samples=8, refit=False)
    cut = prune(PruneConfig(str(folder), str(data), 0.5, **settings), name="tiny-cut",
                log=lambda s: None, progress=False, compare_magnitude=False)
    kd = prune(PruneConfig(str(folder), str(data), 0.5, recover_steps=15, teacher="original",
                           **settings), name="tiny-kd", log=lambda s: None, progress=False,
               compare_magnitude=False)
    original, tok, _ = load_causal_lm(str(folder))
    rows = [encode_example(r, tok, chat_template=False, max_tokens=64)
            for r in read_prompts(data)]

    def gap(spec):
        return mean_divergence(load_causal_lm(spec.local_path)[0], original, rows,
                               pad_id=tok.pad_token_id)

    assert gap(kd.model) < 0.85 * gap(cut.model)
    losses = [h["loss"] for h in kd.run.history()]  # the divergence to the original
    assert len(losses) == 15 and losses[-1] < losses[0]
    assert kd.model.lineage["recovery"] == "logit distillation from the model before pruning"
    assert kd.run.info["recovery"] == kd.model.lineage["recovery"]
    assert cut.model.lineage["recovery"] is None


def test_distillation_teacher_needs_recovery_steps_and_one_vocabulary(tmp_path):
    from tests.finetune.test_distill import OTHER

    folder, data = _folder_and_data(tmp_path)
    with pytest.raises(PruneError, match="--teacher original distills during recovery; give "
                                         "--recover-steps"):
        prune(PruneConfig(str(folder), str(data), 0.5, teacher="original"))
    other = save_model(tmp_path / "other", OTHER, seed=1)
    with pytest.raises(PruneError, match=r"one vocabulary, but --teacher .*other has 18 tokens "
                                         r"and .* 20 .*--teacher original"):
        prune(PruneConfig(str(folder), str(data), 0.5, teacher=str(other), recover_steps=2))
    same = save_model(tmp_path / "same", WORDS, seed=3)  # same vocabulary, other weights
    result = prune(PruneConfig(str(folder), str(data), 0.5, teacher=str(same), recover_steps=2,
                               batch_size=4), name="tiny-other-teacher", log=lambda s: None,
                   progress=False, compare_magnitude=False)
    assert result.model.lineage["recovery"] == f"logit distillation from {same}"


def test_distillation_on_the_answers_is_recorded_and_needs_a_teacher(tmp_path):
    folder, data = _folder_and_data(tmp_path)
    with pytest.raises(PruneError, match="--distill-on and --answer-weight shape recovery by "
                                         "distillation; give --teacher"):
        prune(PruneConfig(str(folder), str(data), 0.5, recover_steps=2, answer_weight=0.5))
    with pytest.raises(PruneError, match="--answer-weight .* between 0 and 1; got -0.1"):
        prune(PruneConfig(str(folder), str(data), 0.5, recover_steps=2, teacher="original",
                          answer_weight=-0.1))
    result = prune(PruneConfig(str(folder), str(data), 0.5, recover_steps=4, teacher="original",
                               distill_on="answers", answer_weight=0.5, batch_size=4, lr=1e-2),
                   name="tiny-kd-answers", log=lambda s: None, progress=False,
                   compare_magnitude=False)
    assert result.model.lineage["recovery"] == (
        "logit distillation from the model before pruning on the answer tokens, mixed with the "
        "answer loss at 0.5")
    losses = [h["loss"] for h in result.run.history()]
    assert len(losses) == 4 and losses[-1] < losses[0]


def test_refit_is_the_default_recorded_and_refused_for_layers(tmp_path, capsys, monkeypatch):
    from appkit.models.catalogue import get_spec

    monkeypatch.chdir(tmp_path)
    folder, data = _folder_and_data(tmp_path)
    assert _cli(folder, data, "tiny-z", "--what", "layers", "--refit") == 2
    assert "--refit re-solves the weights that read removed heads or MLP channels; removed " \
           "layers have none" in capsys.readouterr().err
    assert _cli(folder, data, "tiny-plain", "--batch-size", "4", "--no-refit") == 0
    assert _cli(folder, data, "tiny-refit", "--batch-size", "4") == 0  # refit by default
    plain, fitted = get_spec("tiny-plain"), get_spec("tiny-refit")
    assert fitted.lineage["refit"] is True and plain.lineage["refit"] is False
    assert _cli(folder, data, "tiny-l", "--what", "layers") == 0  # nothing to refit: no error
    assert get_spec("tiny-l").lineage["refit"] is False
    a, b = (transformers.AutoModelForCausalLM.from_pretrained(s.local_path).model.layers[0].mlp
            for s in (plain, fitted))
    assert torch.equal(a.up_proj.weight, b.up_proj.weight)  # the same channels kept
    assert not torch.allclose(a.down_proj.weight, b.down_proj.weight)  # and their reader refit


def test_magnitude_pruning_zeroes_the_share_and_removes_nothing():
    model = build()
    before = count_params(model)
    report = magnitude_prune(model, 0.3)
    assert report.params == before == count_params(model)
    assert report.prunable == 4 * (4 * 32 * 32 - 2 * 32 * 16 + 3 * 32 * 64)
    assert abs(report.zeroed / report.prunable - 0.3) < 0.01
    for layer in model.model.layers:
        w = layer.mlp.up_proj.weight
        assert abs(float((w == 0).float().mean()) - 0.3) < 0.01


@pytest.mark.parametrize("ratio", [0.0, 1.0, 1.5, -0.2])
def test_ratio_outside_zero_one_is_an_error(ratio):
    with pytest.raises(PruneError, match="between 0 and 1"):
        prune_model(build(), batches(), "mlp", ratio)
    with pytest.raises(PruneError, match="between 0 and 1"):
        magnitude_prune(build(), ratio)


def test_ratio_removing_everything_or_nothing_is_an_error():
    with pytest.raises(PruneError, match="would remove all 4 layers"):
        prune_model(build(), batches(), "layers", 0.9)
    with pytest.raises(PruneError, match="would remove all 1 key/value head groups"):
        prune_model(build(num_key_value_heads=1), batches(), "heads", 0.5)
    with pytest.raises(PruneError, match="removes none of the 4 layers"):
        prune_model(build(), batches(), "layers", 0.05)
    with pytest.raises(PruneError, match="unknown structure 'rows'"):
        prune_model(build(), batches(), "rows", 0.5)


def test_unsupported_architecture_is_named():
    torch.manual_seed(0)
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=67, n_embd=32, n_layer=2, n_head=4, n_positions=64))
    with pytest.raises(PruneError, match=r"GPT2LMHeadModel \(gpt2\)"):
        prune_model(gpt2, batches(), "layers", 0.5)


def _cli(model, data, name, *extra):
    return main(["finetune", "prune", "--model", str(model), "--data", str(data), "--ratio",
                 "0.5", "--name", name, "--json", *extra])


def test_cli_prunes_and_registers_with_lineage(tmp_path, capsys, monkeypatch):
    from appkit.config import Profile
    from appkit.models import make_chat_model
    from appkit.models.catalogue import get_spec, list_models

    monkeypatch.chdir(tmp_path)
    folder, data = _folder_and_data(tmp_path)
    assert _cli(folder, data, "tiny-pruned", "--what", "layers", "--recover-steps", "2") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "tiny-pruned" and out["what"] == "layers" and out["removed"]
    assert out["params_after"] < out["params_before"] and out["run"] == "tiny-pruned"
    assert out["magnitude"]["zeroed"] > 0
    spec = get_spec("tiny-pruned")
    assert spec.format == "hf" and spec.name in {m.name for m in list_models()}
    lin = spec.lineage
    assert lin["base"] == str(folder) and lin["pruned"] == "layers" and lin["ratio"] == 0.5
    assert lin["data"] == str(data.resolve()) and lin["data_hash"]
    assert lin["recovery_steps"] == 2 and lin["removed"] == out["removed"]
    again = transformers.AutoModelForCausalLM.from_pretrained(spec.local_path)
    assert again.config.num_hidden_layers == 1
    llm = make_chat_model(Profile(), spec.name, max_tokens=3, temperature=0.0)
    assert isinstance(llm.invoke("What is it ?").content, str)
    # the same name again is refused rather than overwritten
    assert _cli(folder, data, "tiny-pruned") == 2
    assert "exists" in capsys.readouterr().err


def test_cli_trains_the_unpruned_twin_the_same_way(tmp_path, capsys, monkeypatch):
    from appkit.models.catalogue import get_spec
    from finetune.runs import Run

    monkeypatch.chdir(tmp_path)
    folder, data = _folder_and_data(tmp_path)
    assert _cli(folder, data, "tiny-cmp", "--compare-unpruned") == 2  # no recovery to copy
    assert "--compare-unpruned gives the unpruned model" in capsys.readouterr().err
    assert _cli(folder, data, "tiny-cmp", "--recover-steps", "3", "--compare-unpruned",
                "--lr", "1e-2", "--batch-size", "4") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["unpruned"] == "tiny-cmp-unpruned" and out["loss_unpruned"] is not None
    twin, pruned = get_spec("tiny-cmp-unpruned"), get_spec("tiny-cmp")
    assert twin.lineage["unpruned_twin_of"] == "tiny-cmp"
    assert twin.lineage["base"] == pruned.lineage["base"] == str(folder)
    assert twin.lineage["recovery"] == pruned.lineage["recovery"] == "the rows' answers"
    a, b = Run.open("tiny-cmp"), Run.open("tiny-cmp-unpruned")
    assert a.info["config"] == b.info["config"] and len(b.history()) == 3
    original = transformers.AutoModelForCausalLM.from_pretrained(folder)
    trained = transformers.AutoModelForCausalLM.from_pretrained(twin.local_path)
    assert count_params(trained) == count_params(original) == out["params_before"]
    # a twin name already taken is refused before any pruning
    from finetune.runs import runs_dir

    (runs_dir() / "tiny-y-unpruned").mkdir(parents=True)
    assert _cli(folder, data, "tiny-y", "--recover-steps", "1", "--compare-unpruned") == 2
    assert "'tiny-y-unpruned' exists" in capsys.readouterr().err
    assert not (runs_dir() / "tiny-y").exists()


def test_cli_bad_input_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder, data = _folder_and_data(tmp_path)
    assert _cli(folder, tmp_path / "nope.jsonl", "x") == 2
    assert "no such data file" in capsys.readouterr().err
    assert main(["finetune", "prune", "--model", str(folder), "--data", str(data),
                 "--ratio", "1.2"]) == 2
    err = capsys.readouterr().err
    assert "between 0 and 1" in err and "Traceback" not in err
    assert _cli(folder, data, "y", "--what", "layers", "--ratio", "0.9") == 2
    assert "would remove all 2 layers" in capsys.readouterr().err
    with pytest.raises(DataError):
        prune(PruneConfig(str(folder), str(tmp_path / "missing.jsonl"), 0.5))
