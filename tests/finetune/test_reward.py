"""Reward models: trl's RewardTrainer on a tiny random BERT, held-out accuracy, interruption."""

from __future__ import annotations

import random

import pytest

from appkit.errors import AppkitError, ModelNotAvailableError
from appkit.models.catalogue import get_spec
from appkit.models.reward import HFRewardModel, load_reward_model
from finetune.prefs import Preference, split_preferences
from finetune.reward import Interrupt, train_reward

WORDS = ["alpha", "beta", "gamma", "delta", "ok", "cited", "wrong", "maybe", "question", "the"]


def word_tokenizer(tmp_path, extra_tokens: int = 0):
    """A word-level tokenizer over :data:`WORDS` saved in ``tmp_path``, and its vocabulary."""
    from transformers import BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, ":", "[", "]", "1"]
    vocab += [f"extra{i}" for i in range(extra_tokens)]
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return BertTokenizer(str(tmp_path / "vocab.txt")), vocab


def tiny_bert(tmp_path, extra_tokens: int = 0):
    """A two-layer random BERT with one output and a word-level tokenizer saved in ``tmp_path``."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    tokenizer, vocab = word_tokenizer(tmp_path, extra_tokens)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(vocab) - extra_tokens, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                        num_labels=1)
    return BertForSequenceClassification(config), tokenizer


def tiny_llama_rm(tmp_path):
    """A two-layer random Llama-style decoder with a one-logit ``score`` head, same tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    tokenizer, vocab = word_tokenizer(tmp_path)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=64, intermediate_size=128,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=64, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id)
    return LlamaForSequenceClassification(config), tokenizer


def synthetic_pairs(n: int = 48, seed: int = 0) -> list[Preference]:
    """The preferred answer is cited, the rejected one says 'wrong': learnable from words alone."""
    rng = random.Random(seed)
    topics = WORDS[:4]
    out = []
    for i in range(n):
        prompt = f"question {topics[i % 4]} {rng.choice(topics)} {i}"
        filler = " ".join(rng.choice(topics) for _ in range(3))
        out.append(Preference(prompt, f"{filler} ok cited [1]", f"{filler} maybe wrong",
                              "grounded" if i % 2 else "unanswerable"))
    return out


def test_reward_model_scores_heldout_pairs_above_chance(tmp_path):
    model, tok = tiny_bert(tmp_path)
    train, held = split_preferences(synthetic_pairs(), 0.25, seed=0)
    result = train_reward(train, held, base="tiny-bert", name="tiny-rm", model=model,
                          tokenizer=tok, lr=1e-3, batch_size=8, epochs=3, max_length=48,
                          log=lambda *_: None)
    assert not result.interrupted and result.run.info["status"] == "finished"
    assert result.metrics["accuracy"] >= 0.8 and result.metrics["pairs"] == len(held)
    assert {"accuracy/grounded", "accuracy/unanswerable", "pairs_per_s"} <= set(result.metrics)
    spec = get_spec("tiny-rm")
    assert spec.role == "reward" and spec.lineage["metrics"]["accuracy"] == result.metrics["accuracy"]
    assert spec.lineage["pairs"] == len(train) and spec.lineage["base"] == "tiny-bert"
    # The app's scorer loads it by catalogue name and agrees with training's held-out numbers.
    rm = load_reward_model("tiny-rm")
    p = held[0]
    assert rm.prefers(p.prompt, p.chosen, p.rejected)
    assert (result.run.path / "heldout.jsonl").exists() and (result.run.path / "train.jsonl").exists()


def test_interrupted_run_keeps_its_checkpoint_and_registers_nothing(tmp_path):
    from transformers import TrainerCallback

    model, tok = tiny_bert(tmp_path)
    train, held = split_preferences(synthetic_pairs(32), 0.25)
    stop = Interrupt()

    class StopAtTwo(TrainerCallback):
        def on_step_begin(self, _args, state, control, **_):
            if state.global_step == 2:
                stop.requested = True

    result = train_reward(train, held, base="tiny-bert", name="cut-rm", model=model,
                          tokenizer=tok, epochs=2, save_every=100, interrupt=stop,
                          callbacks=[StopAtTwo()], log=lambda *_: None)
    run = result.run
    assert result.interrupted and run.info["status"] == "interrupted" and result.spec is None
    assert (run.path / "trl" / "checkpoint-3").is_dir()
    assert not run.final_dir.exists() and not (run.path / "final.partial").exists()
    with pytest.raises(ModelNotAvailableError):
        get_spec("cut-rm")
    model2, _ = tiny_bert(tmp_path)
    done = train_reward([], [], resume=run, model=model2, tokenizer=tok, log=lambda *_: None)
    assert done.run.info["status"] == "finished" and get_spec("cut-rm").role == "reward"
    assert done.metrics["step"] == run.info["step"] > 3


def test_lora_on_a_decoder_trains_the_head_and_saves_a_plain_merged_model(tmp_path):
    import torch
    from transformers import TrainerCallback

    model, tok = tiny_llama_rm(tmp_path)
    head = model.score.weight.detach().clone()
    train, held = split_preferences(synthetic_pairs(32), 0.25, seed=0)
    stop = Interrupt()

    class StopAtTwo(TrainerCallback):
        def on_step_begin(self, _args, state, control, **_):
            if state.global_step == 2:
                stop.requested = True

    cut = train_reward(train, held, base="tiny-llama", name="lora-rm", model=model,
                       tokenizer=tok, lr=5e-3, batch_size=8, max_steps=5, max_length=48,
                       save_every=100, lora_r=4, register=False, interrupt=stop,
                       callbacks=[StopAtTwo()], log=lambda *_: None)
    assert cut.interrupted
    assert cut.run.info["config"]["lora_r"] == 4 and cut.run.info["config"]["lora_alpha"] == 8
    # Resuming rebuilds the LoRA from the run's config (no lora_r given here) and its checkpoint.
    model2, _ = tiny_llama_rm(tmp_path)
    result = train_reward([], [], resume=cut.run, model=model2, tokenizer=tok, register=False,
                          log=lambda *_: None)
    m = result.metrics
    assert result.run.info["status"] == "finished" and m["step"] == 5
    assert 0 < m["trainable_params"] < m["total_params"] / 5, m
    # A plain transformers folder (no adapter files), loaded and scored the way the app does.
    final = result.run.final_dir
    assert (final / "model.safetensors").exists() and not (final / "adapter_config.json").exists()
    rm = HFRewardModel(final)
    scores = rm.score_pairs([(p.prompt, a) for p in held[:2] for a in (p.chosen, p.rejected)])
    assert len(scores) == 4 and all(isinstance(s, float) for s in scores)
    # The head was trained in full (peft's modules_to_save), and merged into the saved weights.
    saved = rm.warm_up()[0].score.weight.detach()
    assert not torch.allclose(saved, head)
    assert m["pairs"] == len(held) and m["accuracy"] is not None


def test_a_negative_lora_rank_is_refused_naming_the_option(capsys):
    from appkit.cli import main

    with pytest.raises(AppkitError, match="--lora-r"):
        train_reward(synthetic_pairs(8), [], base="tiny-bert", lora_r=-1, log=lambda *_: None)
    assert main(["align", "reward", "--harmless", "--lora-r", "-2"]) == 2
    err = capsys.readouterr().err
    assert "--lora-r" in err and "got -2" in err and "Traceback" not in err


def test_tokenizer_that_does_not_match_the_model_is_refused(tmp_path):
    model, tok = tiny_bert(tmp_path, extra_tokens=5)
    with pytest.raises(AppkitError, match="tokenizer has .* tokens but the model's embeddings"):
        train_reward(synthetic_pairs(8), [], base="tiny-bert", model=model, tokenizer=tok,
                     log=lambda *_: None)
    # The same check guards a saved reward folder whose tokenizer was swapped.
    folder = tmp_path / "rm"
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    with pytest.raises(ModelNotAvailableError, match="do not belong together"):
        HFRewardModel(folder).score("question", ["ok"])


def test_a_chat_model_is_not_a_reward_model():
    with pytest.raises(ModelNotAvailableError, match="not a reward model"):
        load_reward_model("smollm2-135m")


def test_a_gguf_base_is_converted_once_not_loaded(tmp_path, monkeypatch):
    import finetune.base
    from appkit.models.catalogue import ModelSpec
    from finetune.reward import base_folder

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    monkeypatch.setattr(finetune.base, "resolve_base",
                        lambda name: (ModelSpec(name, "chat", "gguf"), gguf))
    monkeypatch.setattr(finetune.base, "convert_gguf", lambda path, log=print: tmp_path / "hf")
    monkeypatch.setattr("finetune.reward.resolve_model",
                        lambda name: (ModelSpec(name, "chat", "gguf"), gguf))
    assert base_folder("smollm2-135m") == tmp_path / "hf"
