"""DPO (trl) on a tiny random Llama whose LoRA run is continued: checkpoints, a clean stop,
resuming, the time limit and the RPO (``sft_weight``) loss."""

from __future__ import annotations

import json

import pytest

from appkit.cli import main
from appkit.errors import AppkitError
from finetune.dpo import PreferencePair, train_dpo
from finetune.runs import Run
from finetune.trl_loop import Interrupt
from tests.finetune.test_rl import _lora_parent, word_tokenizer

PAIRS = [PreferencePair(f"the {w} is", "ok [1]", "no idea", context=f"the {w} is ok")
         for w in ("budget", "idea", "answer", "note", "plan", "text", "rule", "cost")]


@pytest.fixture
def parent(monkeypatch):
    """A finished LoRA run ``sft`` on the tiny policy, rebuilt by ``build_model``."""
    return _lora_parent(monkeypatch, word_tokenizer())


def _quiet(*_):
    return None


def test_interrupted_dpo_run_keeps_its_checkpoint_and_resumes_to_the_end(parent):
    import torch
    from peft import get_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import TrainerCallback

    stop = Interrupt()

    class StopAtTwo(TrainerCallback):
        def on_step_begin(self, _args, state, control, **_):
            if state.global_step == 2:
                stop.requested = True

    run = train_dpo(parent, PAIRS, name="cut", batch_size=2, max_steps=6, max_tokens=64,
                    save_every=100, interrupt=stop, callbacks=[StopAtTwo()], log=_quiet)
    info = run.info
    assert info["status"] == "interrupted" and info["step"] == 3
    assert (run.path / "trl" / "checkpoint-3" / "adapter_model.safetensors").exists()
    assert not run.final_dir.exists() and not (run.path / "final.partial").exists()
    assert len((run.path / "pairs.jsonl").read_text().splitlines()) == len(PAIRS)

    began = []
    saved = load_file(str(run.path / "trl" / "checkpoint-3" / "adapter_model.safetensors"))
    start = load_file(str(parent.final_dir / "adapter_model.safetensors"))
    assert saved.keys() == start.keys() and any(not torch.equal(saved[k], start[k]) for k in saved)

    class FirstStep(TrainerCallback):
        def on_train_begin(self, _args, state, control, model=None, **_):
            # the checkpoint's adapter is what training continues from
            now = get_peft_model_state_dict(model, adapter_name="default")
            began.append((state.global_step, all(torch.equal(now[k], saved[k]) for k in saved)))

    # pairs and settings come from the run, not from the call
    done = train_dpo(None, [], resume="cut", batch_size=99, callbacks=[FirstStep()], log=_quiet)
    info = done.info
    assert began == [(3, True)] and info["status"] == "finished" and info["step"] == 6
    assert [r["step"] for r in done.history()] == [1, 2, 3, 4, 5, 6]
    assert json.loads((done.final_dir / "adapter_config.json").read_text())["r"] == 4
    assert not (done.final_dir / "ref").exists()  # trl's reference copy is not saved
    with pytest.raises(AppkitError, match="already finished"):
        train_dpo(None, [], resume="cut", log=_quiet)
    with pytest.raises(AppkitError, match="not a DPO run"):
        train_dpo(None, [], resume="sft", log=_quiet)


def test_time_limit_ends_dpo_as_a_finished_run(parent):
    run = train_dpo(parent, PAIRS, name="timed", batch_size=2, max_steps=6, max_tokens=64,
                    max_minutes=1e-6, save_every=100, log=_quiet)
    info = run.info
    assert info["status"] == "finished" and info["stopped"] == "time limit"
    assert info["step"] == 1 and (run.final_dir / "adapter_model.safetensors").exists()
    assert (run.path / "trl" / "checkpoint-1").is_dir()


def test_sft_weight_adds_the_likelihood_term_to_the_dpo_loss(parent):
    from transformers import TrainerCallback

    seen = {}

    class Args(TrainerCallback):
        def on_train_begin(self, args, _state, _control, **_):
            seen.update(loss_type=list(args.loss_type), loss_weights=list(args.loss_weights))

    run = train_dpo(parent, PAIRS[:2], name="rpo", batch_size=2, max_steps=1, max_tokens=64,
                    sft_weight=0.5, callbacks=[Args()], log=_quiet)
    assert seen == {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]}
    assert run.info["dpo"]["sft_weight"] == 0.5 and run.info["status"] == "finished"
    with pytest.raises(AppkitError, match="sft_weight"):
        train_dpo(parent, PAIRS, name="bad", sft_weight=-1, log=_quiet)


def test_finetune_dpo_resume_errors(parent, capsys):
    assert main(["finetune", "dpo", "--resume", "sft"]) == 2
    assert "not a DPO run" in capsys.readouterr().err
    assert main(["finetune", "dpo", "sft", "--resume", "x", "--pairs", "p.jsonl"]) == 2
    assert "give no RUN" in capsys.readouterr().err
    assert main(["finetune", "dpo"]) == 2
    assert "--resume DPO_RUN" in capsys.readouterr().err
