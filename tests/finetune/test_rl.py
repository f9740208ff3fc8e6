"""RL (trl RLOO) on a tiny random Llama with a LoRA adapter: a toy rule reward rises, the KL
budget stops training, rule rewards score as documented."""

from __future__ import annotations

import pytest

from appkit.errors import AppkitError
from finetune.rl import (
    answer_reward, citation_reward, length_penalty, refusal_penalty, reward_model_reward,
    train_rl)

WORDS = ["the", "budget", "is", "ok", "no", "idea", "[1]", "[2]", "maybe", "yes"]


def word_tokenizer():
    """A word-level fast tokenizer: [PAD] 0, [BOS] 1, [EOS] 2, then WORDS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["[PAD]", "[BOS]", "[EOS]", "[UNK]", *WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", bos_token="[BOS]",
                                   eos_token="[EOS]", unk_token="[UNK]")


def tiny_policy(vocab: int, seed: int = 0):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128, tie_word_embeddings=False,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return LlamaForCausalLM(config)


def says_ok(completions, **_):
    """Toy rule: the share of words that are 'ok'."""
    return [c.split().count("ok") / max(1, len(c.split())) for c in completions]


ROWS = [{"prompt": p} for p in ("the budget is", "is the budget", "maybe the", "the idea is")]


def test_a_few_rl_steps_raise_a_toy_rule_reward(tmp_path):
    tok = word_tokenizer()
    result = train_rl(tiny_policy(len(tok)), tok, ROWS, reward_funcs=[says_ok], name="rl-toy",
                      beta=0.01, lr=1e-1, max_steps=24, batch_size=16, num_generations=4,
                      max_completion_length=8, lora_r=8, root=str(tmp_path),
                      log=lambda *_: None)
    rewards = [h["reward"] for h in result.history]
    assert result.steps == 24 and not result.stopped and len(rewards) == 24
    # About 0.10 at the start (one word in ten); a few steps later clearly above it.
    assert sum(rewards[-6:]) / 6 > sum(rewards[:6]) / 6 + 0.03
    assert all("kl" in h and "sample" in h for h in result.history)
    info = result.run.info
    assert info["status"] == "finished" and info["method"] == "lora"
    assert (result.run.final_dir / "adapter_config.json").exists()
    assert len(info["reward_hacking"]["top"]) == 5 and "length_correlation" in info["reward_hacking"]


def test_kl_budget_stops_training(tmp_path):
    tok = word_tokenizer()
    result = train_rl(tiny_policy(len(tok)), tok, ROWS, reward_funcs=[says_ok], name="rl-kl",
                      beta=0.01, kl_budget=1e-9, lr=3e-2, max_steps=20, batch_size=8,
                      num_generations=4, max_completion_length=6, lora_r=4, root=str(tmp_path),
                      log=lambda *_: None)
    assert result.stopped == "kl budget" and result.steps < 20
    assert result.history[-1]["kl"] > 1e-9 and result.run.info["stopped"] == "kl budget"


def test_kl_budget_saves_the_last_policy_within_it(tmp_path):
    """The KL logged at step t is the policy's before update t; over budget there, the policy
    saved is the one before update t-1 (measured at step t-1, within the budget)."""
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    before: dict[int, float] = {}  # global step at the start of a step -> sum |trainable|

    class Record(TrainerCallback):
        def on_step_begin(self, _args, state, _control, model=None, **_):
            before[state.global_step] = float(sum(
                p.detach().abs().sum() for p in model.parameters() if p.requires_grad))

    tok = word_tokenizer()
    result = train_rl(tiny_policy(len(tok)), tok, ROWS, reward_funcs=[says_ok], name="rl-kl2",
                      beta=0.01, kl_budget=0.02, lr=5e-2, max_steps=30, batch_size=8,
                      num_generations=4, max_completion_length=6, lora_r=4, root=str(tmp_path),
                      callbacks=[Record()], log=lambda *_: None)
    assert result.stopped == "kl budget" and result.steps >= 2
    kls = [h["kl"] for h in result.history]
    assert kls[-1] > 0.02 and max(kls[:-1]) <= 0.02
    assert result.kept_step == result.steps - 2 == result.run.info["kept_step"]
    saved = load_file(result.run.final_dir / "adapter_model.safetensors")
    total = float(sum(t.abs().sum() for t in saved.values()))
    assert total == pytest.approx(before[result.kept_step], rel=1e-5)
    assert total != pytest.approx(before[result.steps - 1], rel=1e-5)


def test_the_answer_rule_needs_reference_answers_before_training(tmp_path):
    with pytest.raises(AppkitError, match="prompt 1 has no reference answer"):
        train_rl(None, None, ROWS, reward_funcs=[answer_reward], name="x", root=str(tmp_path))
    assert not list(tmp_path.iterdir())


def test_rl_needs_a_leave_one_out_group(tmp_path):
    with pytest.raises(AppkitError, match="num_generations >= 2"):
        train_rl(None, None, ROWS, reward_funcs=[says_ok], name="x", num_generations=1,
                 root=str(tmp_path))


def test_rule_rewards():
    assert citation_reward(["A [1].", "B [3]", "C"], sources=[2, 2, 2]) == [1.0, 0.0, 0.0]
    assert citation_reward([[{"role": "assistant", "content": "x [2]"}]]) == [1.0]
    # markers alone are no answer; back-to-back repeats earn half; citing twice apart is fine
    assert citation_reward(["[1]", "[1] [2].", "Paris [1] [1]", "Paris [1], [1].",
                            "Paris [1] and Lyon [1]."]) == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert citation_reward(["The documents do not say.", "It is 40k [1].",
                            "The documents do not say [1]."],
                           answerable=[False, False, False]) == [1.0, 0.0, 0.0]
    assert length_penalty(["a" * 10, "a" * 410], limit=400) == [0.0, pytest.approx(-0.02)]
    # refusing what the sources answer costs; refusing the unanswerable does not
    said = ["The documents do not say.", "Paris [1].", "The documents do not say."]
    assert refusal_penalty(said, answerable=[True, True, False]) == [-1.0, 0.0, 0.0]
    assert refusal_penalty(said[:2]) == [-1.0, 0.0]


def test_answer_reward_pays_token_f1_on_answerable_rows_only():
    said = ["The Rhine [1].", "the river Rhine [1]", "The documents do not say.", "Rhine"]
    assert answer_reward(said, answer=["Rhine"] * 4, answerable=[True, True, True, False]) == [
        1.0, pytest.approx(2 / 3), 0.0, 0.0]
    assert answer_reward([[{"role": "assistant", "content": "Paris [2]"}]],
                         answer=["Paris"]) == [1.0]
    # several acceptable answers, as `appkit finetune check` reads them: the best counts
    assert answer_reward(["the city of Paris [1]"], answer=["Lyon ||| the city of Paris"]) == [
        1.0]
    with pytest.raises(AppkitError, match="reference answers"):
        answer_reward(["Paris"])


def test_a_rule_takes_its_own_weight():
    from finetune.align_cli import _rl_rewards

    funcs, weights = _rl_rewards("", ["citation", "refusal:3", "length:0.5", "answer"], 2.0)
    assert funcs == [citation_reward, refusal_penalty, length_penalty, answer_reward]
    assert weights == [2.0, 3.0, 0.5, 2.0]
    with pytest.raises(AppkitError, match="unknown rule reward 'polite'"):
        _rl_rewards("", ["polite"], 1.0)
    with pytest.raises(AppkitError, match="--rule refusal:x: the weight after ':' must be a "
                                          "number"):
        _rl_rewards("", ["refusal:x"], 1.0)


def test_unanswerable_variants_pair_questions_with_other_passages():
    from finetune.check import REFUSAL
    from finetune.data import Example
    from finetune.rl import policy_rows, with_unanswerable

    rows = [Example(f"q{i}?", f"a{i}", input=f"passage {i}", group=str(i)) for i in range(4)]
    mixed = with_unanswerable(rows, 0.5, seed=1)
    extra = mixed[4:]
    assert mixed[:4] == rows and len(extra) == 2
    assert all(e.output == REFUSAL and e.input != f"passage {e.instruction[1]}" for e in extra)
    policy = policy_rows(mixed, word_tokenizer(), False)
    assert [r["answerable"] for r in policy] == [True] * 4 + [False] * 2
    assert [r["answer"] for r in policy][:4] == ["a0", "a1", "a2", "a3"]
    assert policy[0]["reward_prompt"].startswith("Sources:\n[1] passage 0")


def test_reward_model_reward_scores_the_reward_prompt():
    from appkit.testing import FakeRewardModel

    fake = FakeRewardModel(lambda prompt, answer: float(prompt == "Sources…" and answer == "a"))
    f = reward_model_reward(fake)
    assert f(prompts=["policy prompt"] * 2, completions=["a", "b"],
             reward_prompt=["Sources…"] * 2) == [1.0, 0.0]


def _lora_parent(monkeypatch, tok):
    """A finished LoRA run ``sft`` on the tiny policy, rebuilt by ``build_model``."""
    from types import SimpleNamespace

    import finetune.trainer
    from finetune.runs import Run
    from finetune.trainer import TrainConfig, save_weights, wrap_lora

    config = TrainConfig(base="smollm2-135m", data="-", r=4, targets=("q_proj", "v_proj"))
    parent = Run.create("sft", {"base": "smollm2-135m", "base_gguf": "-", "method": "lora",
                                "config": config.to_dict()})
    save_weights(wrap_lora(tiny_policy(len(tok)), config), parent.final_dir, "lora")
    parent.update(status="finished")

    def fake_build(cfg, *, log=print, adapter=None):
        import peft

        model = peft.PeftModel.from_pretrained(tiny_policy(len(tok)), str(adapter),
                                               is_trainable=True)
        return model, SimpleNamespace(tokenizer=tok, has_chat_template=False)

    monkeypatch.setattr(finetune.trainer, "build_model", fake_build)
    return parent


def _qa_rows(tmp_path):
    from tests.finetune.conftest import write_jsonl

    return write_jsonl(tmp_path / "train.jsonl", [
        {"instruction": "the budget", "input": "the budget is ok", "output": "ok [1]"},
        {"instruction": "the idea", "input": "no idea", "output": "no [1]"}])


def test_align_rl_continues_a_lora_run(tmp_path, monkeypatch, capsys):
    """The command: a finished LoRA run's adapter keeps training under the citation rule."""
    import json

    from appkit.cli import main
    from finetune.runs import Run

    _lora_parent(monkeypatch, word_tokenizer())
    rows = _qa_rows(tmp_path)
    assert main(["align", "rl", "--policy", "sft", "--prompts", str(rows), "--rule", "citation",
                 "--rule", "refusal", "--steps", "2", "--unanswerable", "0.5", "--batch-size",
                 "4", "--generations", "2", "--max-tokens", "4", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    run = Run.open("sft-rl")
    assert summary["steps"] == 2 and run.info["parent"] == "sft" and run.info["method"] == "lora"
    assert run.info["rules"] == ["citation", "refusal"]
    assert (run.final_dir / "adapter_config.json").exists()
    assert not (run.final_dir / "ref").exists()


def test_align_rl_resumes_after_a_ctrl_c(tmp_path, monkeypatch, capsys):
    """A real SIGINT during the first step: a checkpoint, exit 130, then ``--resume`` finishes."""
    import json
    import os
    import signal

    import finetune.rl
    from appkit.cli import main
    from finetune.runs import Run

    _lora_parent(monkeypatch, word_tokenizer())
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN where the shell started us in the background
    calls = []
    original = finetune.rl.citation_reward

    def citation_reward(completions, **kw):
        calls.append(1)
        if len(calls) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while step 1 is scored
        return original(completions, **kw)

    monkeypatch.setattr(finetune.rl, "citation_reward", citation_reward)
    flags = ["--rule", "citation", "--steps", "3", "--batch-size", "4", "--generations", "2",
             "--max-tokens", "4", "--save-every", "100"]
    assert main(["align", "rl", "--policy", "sft", "--prompts", str(_qa_rows(tmp_path)),
                 *flags]) == 130
    assert "continue with: appkit align rl --resume sft-rl" in capsys.readouterr().err
    run = Run.open("sft-rl")
    assert run.info["status"] == "interrupted" and run.info["step"] == 1
    assert (run.path / "trl" / "checkpoint-1").is_dir() and not run.final_dir.exists()
    assert signal.getsignal(signal.SIGINT) is before  # handler restored

    assert main(["align", "rl", "--resume", "sft-rl", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 3 and run.info["status"] == "finished"
    assert [h["step"] for h in run.history()] == [1, 2, 3]
    assert (run.final_dir / "adapter_config.json").exists() and not (run.final_dir / "ref").exists()
    assert main(["align", "rl", "--resume", "sft-rl"]) == 2
    assert "already finished" in capsys.readouterr().err
    assert main(["align", "rl", "--resume", "sft"]) == 2
    assert "not an RL run" in capsys.readouterr().err
    assert main(["align", "rl", "--resume", "sft-rl", "--policy", "sft"]) == 2
    assert "give no --policy" in capsys.readouterr().err


def test_interrupted_rl_run_keeps_its_checkpoint_and_resumes(tmp_path):
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    from finetune.trl_loop import Interrupt

    tok = word_tokenizer()
    stop = Interrupt()

    class StopAtTwo(TrainerCallback):
        def on_step_begin(self, _args, state, control, **_):
            if state.global_step == 2:
                stop.requested = True

    settings = dict(reward_funcs=[says_ok], beta=0.01, lr=3e-2, batch_size=4, num_generations=2,
                    max_completion_length=4, lora_r=4, root=str(tmp_path), log=lambda *_: None)
    cut = train_rl(tiny_policy(len(tok)), tok, ROWS, name="rl-cut", max_steps=5, save_every=100,
                   interrupt=stop, callbacks=[StopAtTwo()], **settings)
    run = cut.run
    assert cut.stopped == "interrupted" and cut.steps == 3 and run.info["status"] == "interrupted"
    assert (run.path / "trl" / "checkpoint-3" / "adapter_model.safetensors").exists()
    assert not run.final_dir.exists() and not (run.path / "final.partial").exists()
    assert len((run.path / "prompts.jsonl").read_text().splitlines()) == len(ROWS)
    with pytest.raises(AppkitError, match="same"):
        train_rl(tiny_policy(len(tok)), tok, [], reward_funcs=[length_penalty], resume=run)

    saved = load_file(str(run.path / "trl" / "checkpoint-3" / "adapter_model.safetensors"))
    began = []

    class FirstStep(TrainerCallback):
        def on_train_begin(self, _args, state, control, model=None, **_):
            # a fresh LoRA on a fresh policy, then the checkpoint's adapter loaded into it
            now = get_peft_model_state_dict(model, adapter_name="default")
            began.append((state.global_step, all(torch.equal(now[k], saved[k]) for k in saved)))

    done = train_rl(tiny_policy(len(tok)), tok, [], resume=run, callbacks=[FirstStep()],
                    **settings)
    assert began == [(3, True)] and any(v.abs().sum() > 0 for k, v in saved.items()
                                        if "lora_B" in k)  # trained, not the zero init
    assert done.steps == 5 and not done.stopped and run.info["status"] == "finished"
    assert [h["step"] for h in done.history] == [1, 2, 3, 4, 5]
    assert (run.final_dir / "adapter_model.safetensors").exists()
    with pytest.raises(AppkitError, match="already finished"):
        train_rl(tiny_policy(len(tok)), tok, [], resume=run, **settings)


def test_time_limit_ends_rl_as_a_finished_run(tmp_path):
    tok = word_tokenizer()
    result = train_rl(tiny_policy(len(tok)), tok, ROWS, reward_funcs=[says_ok], name="rl-timed",
                      max_steps=5, batch_size=4, num_generations=2, max_completion_length=4,
                      max_minutes=1e-6, root=str(tmp_path), log=lambda *_: None)
    assert result.stopped == "time limit" and result.steps == 1
    info = result.run.info
    assert info["status"] == "finished" and info["stopped"] == "time limit"
    assert (result.run.final_dir / "adapter_model.safetensors").exists()


def test_each_reward_runs_once_per_batch_and_the_totals_are_weighted(tmp_path):
    calls = {"a": 0, "b": 0}

    def a(completions, **_):
        calls["a"] += 1
        return [1.0] * len(completions)

    def b(completions, **_):
        calls["b"] += 1
        return [2.0] * len(completions)

    tok = word_tokenizer()
    result = train_rl(tiny_policy(len(tok)), tok, ROWS, reward_funcs=[a, b],
                      reward_weights=[1.0, 0.5], name="rl-two", beta=0.0, max_steps=2,
                      batch_size=4, num_generations=2, max_completion_length=3,
                      root=str(tmp_path), log=lambda *_: None)
    assert calls == {"a": 2, "b": 2}
    assert {s["reward"] for s in result.hacking["top"]} == {2.0}
