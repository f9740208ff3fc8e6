"""The training loop on a tiny random Llama: the loss falls, resume continues exactly, Ctrl-C stops
cleanly with a checkpoint, full fine-tuning works."""

from __future__ import annotations

import os
import signal

import pytest

from finetune.data import Example, encode_example
from finetune.runs import Run, loss_curve
from finetune.trainer import Trainer, TrainConfig, _StopFlag, load_weights, sample_order, wrap_lora

torch = pytest.importorskip("torch")

ROWS = [Example("Who wrote it?", "Ada", input="Ada wrote it."),
        Example("Where is it?", "Paris", input="It is in Paris."),
        Example("When?", "1843", input="It was 1843."),
        Example("What colour?", "blue", input="The sky is blue.")]


def _config(**kw) -> TrainConfig:
    defaults = dict(base="tiny", data="-", r=4, alpha=8, dropout=0.1, lr=5e-3, batch_size=2,
                    max_steps=12, save_every=4, warmup=0.1, targets=("q_proj", "v_proj", "o_proj",
                                                                      "gate_proj", "up_proj", "down_proj"))
    defaults.update(kw)
    return TrainConfig(**defaults)


def _trainer(tmp_path, name, make_tiny, tok, config, seed=0):
    torch.manual_seed(seed)
    model = make_tiny(0)
    if config.method == "lora":
        model = wrap_lora(model, config)
    encoded = [encode_example(r, tok, chat_template=False, max_tokens=96) for r in ROWS]
    run = Run(tmp_path / name) if (tmp_path / name).exists() else Run.create(
        name, {"method": config.method, "config": config.to_dict()}, root=tmp_path)
    torch.manual_seed(seed)
    return Trainer(model, encoded, config, run, pad_id=tok.pad_token_id, progress=False,
                   log=lambda s: None)


def _lora_state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items() if "lora_" in k}


def test_loss_falls(tmp_path, make_tiny, char_tokenizer):
    trainer = _trainer(tmp_path, "falls", make_tiny, char_tokenizer, _config(max_steps=30, lr=5e-2))
    result = trainer.fit()
    losses = [r["loss"] for r in trainer.run.history()]
    assert result.status == "finished" and result.step == 30
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5
    assert (trainer.run.final_dir / "adapter_model.safetensors").exists()
    assert trainer.run.info["status"] == "finished"
    assert "*" in loss_curve(trainer.run.history())


def test_resume_after_interruption_continues_from_the_checkpoint(tmp_path, make_tiny,
                                                                 char_tokenizer):
    config = _config()
    straight = _trainer(tmp_path, "straight", make_tiny, char_tokenizer, config)
    straight.fit()
    expected = _lora_state(straight.model)

    first = _trainer(tmp_path, "resumed", make_tiny, char_tokenizer, config)
    first.stop_at = 6
    result = first.fit()
    assert result.status == "interrupted" and result.step == 6
    assert first.run.info["status"] == "interrupted"
    assert not first.run.final_dir.exists()
    assert [c.name for c in first.run.checkpoints()] == ["step-4", "step-6"]

    second = _trainer(tmp_path, "resumed", make_tiny, char_tokenizer, config, seed=123)
    second.load_checkpoint(second.run.latest_checkpoint())
    assert second.step == 6
    second.fit()
    got = _lora_state(second.model)
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=1e-4, atol=1e-6)
    assert [r["step"] for r in second.run.history()] == list(range(1, 13))


def test_first_ctrl_c_asks_for_a_clean_stop_and_the_second_stops_now():
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN when pytest runs in the background
    with _StopFlag() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_during_training_keeps_the_last_checkpoint(tmp_path, make_tiny, char_tokenizer):
    trainer = _trainer(tmp_path, "ctrlc", make_tiny, char_tokenizer, _config())
    original = trainer.train_step

    def step_then_interrupt(batches):
        loss = original(batches)
        if trainer.step == 2:  # the third step: the user presses Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)
        return loss

    trainer.train_step = step_then_interrupt
    result = trainer.fit()
    assert result.status == "interrupted" and result.step == 3
    assert trainer.run.latest_checkpoint().name == "step-3"
    fresh = _trainer(tmp_path, "ctrlc", make_tiny, char_tokenizer, _config())
    load_weights(fresh.model, trainer.run.latest_checkpoint() / "weights", "lora")
    torch.testing.assert_close(_lora_state(fresh.model), _lora_state(trainer.model))


def test_full_fine_tuning_changes_every_weight_and_saves_them(tmp_path, make_tiny,
                                                                char_tokenizer):
    config = _config(method="full", max_steps=3, lr=1e-3)
    trainer = _trainer(tmp_path, "full", make_tiny, char_tokenizer, config)
    for p in trainer.model.parameters():
        assert p.requires_grad
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.fit()
    after = trainer.model.state_dict()
    assert not torch.equal(before["model.layers.0.mlp.up_proj.weight"],
                           after["model.layers.0.mlp.up_proj.weight"])
    assert (trainer.run.final_dir / "model.safetensors").exists()


def test_sample_order_covers_each_epoch_once():
    order = sample_order(5, 12, seed=3)
    assert sorted(order[:5]) == list(range(5)) and sorted(order[5:10]) == list(range(5))
    assert order == sample_order(5, 12, seed=3)


def test_time_limit_ends_the_run_with_final_weights(tmp_path, make_tiny, char_tokenizer):
    trainer = _trainer(tmp_path, "timed", make_tiny, char_tokenizer,
                       _config(max_steps=1000, max_minutes=1e-9))
    result = trainer.fit()
    assert result.status == "time limit" and result.step == 1
    assert trainer.run.info["status"] == "finished"
    assert trainer.run.info["stopped_by"] == "time limit"
    assert trainer.run.final_dir.exists()


def test_a_time_budget_decays_the_learning_rate_by_its_end(tmp_path, make_tiny, char_tokenizer):
    trainer = _trainer(tmp_path, "budget", make_tiny, char_tokenizer,
                       _config(max_steps=1000, max_minutes=1.0, warmup=0.01))
    lr_at = trainer.scheduler.lr_lambdas[0]
    assert lr_at(20) == pytest.approx(1 - 10 / 990)  # no time spent: the step schedule
    trainer.seconds_before = 30.0  # half the budget spent before the first step counts
    assert lr_at(20) == pytest.approx(0.5)
    trainer.seconds_before = 90.0
    assert lr_at(20) == 0.0 and trainer.budget_spent() == 1.0
    unlimited = _trainer(tmp_path, "steps", make_tiny, char_tokenizer,
                         _config(max_steps=1000, warmup=0.01))
    unlimited.seconds_before = 1e6
    assert unlimited.scheduler.lr_lambdas[0](20) == pytest.approx(1 - 10 / 990)


def test_resume_counts_the_time_of_earlier_calls(tmp_path, make_tiny, char_tokenizer):
    config = _config(max_minutes=60.0)
    first = _trainer(tmp_path, "timed-resume", make_tiny, char_tokenizer, config)
    first.stop_at = 6
    first.fit()
    spent = first.run.info["train_seconds"]
    second = _trainer(tmp_path, "timed-resume", make_tiny, char_tokenizer, config)
    second.load_checkpoint(second.run.latest_checkpoint())
    assert second.seconds_before == spent and second.training_seconds() == spent
    second.fit()
    assert second.run.info["train_seconds"] >= spent
