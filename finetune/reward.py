"""Reward models with ``trl``'s ``RewardTrainer``: a one-logit sequence-classification head.

The base is the packaged MiniLM encoder (``all-minilm-l6-v2``, fast) or a small decoder from the
catalogue (``smollm2-135m``, converted from its GGUF once by :mod:`finetune.base`), or any
transformers folder. Pairs are tokenized here with :func:`appkit.models.reward.encode_pair`, the
same function the app scores with, so training and best-of-n see the same inputs.

A run lives in the usual run folder (:class:`finetune.runs.Run`) with its train and held-out pairs
written before training. trl's checkpoints are kept (the two newest) every ``save_every`` steps; a
first Ctrl-C finishes the step, saves a checkpoint and stops, and the run is marked ``interrupted``
with nothing registered. Only a finished run's model is written (to ``final.partial``, renamed to
``final``), scored on the held-out pairs and then registered in the catalogue with its lineage.

``lora_r > 0`` trains a peft LoRA adapter on every linear layer of the base while the
classification head (:func:`head_modules`) is trained in full; the adapter is merged into the base
before saving, so ``final`` is a plain transformers folder either way. On a decoder base only a
small share of the weights then gets gradients and optimizer state.

Example:
    >>> from finetune.reward import train_reward  # doctest: +SKIP
    >>> result = train_reward(train, heldout, base="all-minilm-l6-v2", name="notes-rm")  # doctest: +SKIP
    >>> result.metrics["accuracy"]  # doctest: +SKIP
    0.93
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appkit.errors import AppkitError
from appkit.lazy import require
from appkit.models.catalogue import ModelSpec, register_model, resolve_model
from appkit.models.reward import PROMPT_FORMAT, HFRewardModel, check_tokenizer, encode_pair
from finetune.prefs import Preference, preferences_hash, write_preferences
from finetune.runs import Run
from finetune.trl_loop import Interrupt, TrlLoop  # Interrupt: also importable from here


@dataclass
class RewardResult:
    """What :func:`train_reward` produced.

    Attributes:
        run: the run folder.
        metrics: held-out ``accuracy`` (overall and ``accuracy/<source>``), ``pairs``,
            ``pairs_per_s`` (scoring), ``train_seconds``, ``trainable_params`` (what the
            optimizer updated: all weights, or LoRA + head) and ``total_params`` (the base's).
        spec: the catalogue entry (None when not registered).
        interrupted: training stopped early; nothing was registered.
    """

    run: Run
    metrics: dict[str, Any] = field(default_factory=dict)
    spec: ModelSpec | None = None
    interrupted: bool = False


def base_folder(base: str, *, log: Callable[[str], None] = print) -> Path:
    """The transformers folder of a reward base: a catalogue name or a folder.

    Raises:
        AppkitError: the base is an OpenAI endpoint or otherwise not loadable by transformers.
    """
    folder = Path(os.path.expanduser(base))
    if folder.is_dir():
        return folder
    spec, path = resolve_model(base)
    if spec.format == "gguf":  # a small decoder: its float32 copy, converted once
        from finetune.base import convert_gguf, resolve_base

        return convert_gguf(resolve_base(base)[1], log=log)
    if spec.format in ("sentence-transformers", "hf") and Path(path).is_dir():
        return Path(path)
    raise AppkitError(f"'{base}' ({spec.format}) cannot be a reward model base; use "
                      "all-minilm-l6-v2, smollm2-135m or a transformers folder")


def load_reward_base(base: str, *, log: Callable[[str], None] = print) -> tuple[Any, Any]:
    """A one-logit sequence-classification model and its tokenizer from :func:`base_folder`."""
    transformers = require("transformers", extra="finetune")
    folder = base_folder(base, log=log)
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=1)
    return model, tokenizer


def head_modules(model: Any) -> list[str]:
    """Names of a sequence-classification model's head: its top-level parts with weights outside
    the backbone (``score`` on Llama-family decoders, ``classifier`` on BERT, ``pre_classifier``
    and ``classifier`` on DistilBERT).

    These are randomly initialised, so with LoRA they are trained in full (peft's
    ``modules_to_save``) instead of guessing them from peft's built-in list of common names.

    Raises:
        AppkitError: the model has no part outside its backbone.
    """
    backbone = getattr(model, "base_model", model)  # transformers: the ``base_model_prefix`` part
    names = [name for name, child in model.named_children()
             if child is not backbone and next(child.parameters(), None) is not None]
    if backbone is model or not names:
        raise AppkitError(f"cannot find the classification head of {type(model).__name__} next "
                          "to its backbone; train it without LoRA (lora_r=0, --lora-r 0)")
    return names


def check_lora(lora_r: int, lora_alpha: int) -> None:
    """Refuse a negative LoRA rank or alpha.

    Raises:
        AppkitError: naming the option and what it takes.
    """
    if lora_r < 0:
        raise AppkitError(f"--lora-r (lora_r) must be 0 (full fine-tune) or a positive rank such "
                          f"as 8 or 16, got {lora_r}")
    if lora_alpha < 0:
        raise AppkitError(f"--lora-alpha (lora_alpha) must be 0 (twice the rank) or positive, got "
                          f"{lora_alpha}")


def _lora_config(model: Any, r: int, alpha: int) -> Any:
    peft = require("peft", extra="finetune")
    return peft.LoraConfig(task_type="SEQ_CLS", r=r, lora_alpha=alpha, lora_dropout=0.0,
                           target_modules="all-linear", modules_to_save=head_modules(model))


def _records(pairs: Sequence[Preference], tokenizer: Any, max_length: int) -> list[dict[str, Any]]:
    return [{"chosen_ids": encode_pair(tokenizer, p.prompt, p.chosen, max_length),
             "rejected_ids": encode_pair(tokenizer, p.prompt, p.rejected, max_length)}
            for p in pairs]


def heldout_metrics(scorer: Any, pairs: Sequence[Preference]) -> dict[str, Any]:
    """Pairwise accuracy on held-out pairs (chosen scored above rejected), overall and per source."""
    start = time.perf_counter()
    flat = [(p.prompt, a) for p in pairs for a in (p.chosen, p.rejected)]
    scores = scorer.score_pairs(flat)
    seconds = time.perf_counter() - start
    wins: dict[str, list[bool]] = {}
    for i, p in enumerate(pairs):
        wins.setdefault(p.source, []).append(scores[2 * i] > scores[2 * i + 1])
    every = [w for ws in wins.values() for w in ws]
    metrics: dict[str, Any] = {
        "accuracy": round(sum(every) / len(every), 4) if every else None,
        "pairs": len(every),
        "pairs_per_s": round(len(every) / seconds, 1) if seconds > 0 else None,
    }
    for source, ws in sorted(wins.items()):
        metrics[f"accuracy/{source}"] = round(sum(ws) / len(ws), 4)
    return metrics


def train_reward(train: Sequence[Preference], heldout: Sequence[Preference], *,
                 base: str = "all-minilm-l6-v2", name: str = "", lr: float = 5e-5,
                 batch_size: int = 8, epochs: float = 1.0, max_steps: int = 0,
                 max_length: int = 256, save_every: int = 50, seed: int = 0, threads: int = 0,
                 lora_r: int = 0, lora_alpha: int = 0, register: bool = True,
                 resume: Run | str | None = None,
                 model: Any = None, tokenizer: Any = None, interrupt: Interrupt | None = None,
                 callbacks: Sequence[Any] = (), log: Callable[[str], None] = print
                 ) -> RewardResult:
    """Train a reward model on preference pairs and score it on held-out pairs.

    Args:
        train: training pairs (split from the held-out ones by prompt beforehand).
        heldout: held-out pairs for pairwise accuracy.
        base: catalogue name or folder of the base (ignored with ``model``).
        name: the run's and the catalogue entry's name (default ``<base>-reward``).
        lr: learning rate.
        batch_size: pairs per step.
        epochs: passes over the pairs.
        max_steps: optimizer steps (0: from ``epochs``).
        max_length: longest prompt + answer in tokens (the prompt is cut first).
        save_every: checkpoint every N steps.
        seed: the seed.
        threads: torch threads (0: torch's default).
        lora_r: LoRA rank on every linear layer of the base, the head trained in full (0: a full
            fine-tune). The adapter is merged before saving.
        lora_alpha: LoRA alpha (0: ``2 * lora_r``).
        register: add the finished model to the catalogue.
        resume: continue an interrupted run from its newest checkpoint (same pairs and settings).
        model: an already built one-logit model (tests); ``tokenizer`` must come with it.
        tokenizer: its tokenizer.
        interrupt: a stop flag checked after each step (default: set by Ctrl-C).
        callbacks: extra ``transformers`` trainer callbacks.
        log: where progress lines go.

    Returns:
        The run, its held-out metrics and its catalogue entry.

    Raises:
        AppkitError: no pairs, a tokenizer that does not match the model, a run name in use,
            a negative ``lora_r`` or ``lora_alpha``.
    """
    check_lora(lora_r, lora_alpha)
    torch = require("torch", extra="finetune")
    trl = require("trl", extra="finetune")
    datasets = require("datasets", extra="finetune")
    if resume is not None:
        run = resume if isinstance(resume, Run) else Run.open(resume)
        info = run.info
        if info.get("method") != "reward":
            raise AppkitError(f"run '{run.name}' is not a reward-model run")
        from finetune.prefs import read_preferences

        train = read_preferences(run.path / "train.jsonl")[0]
        heldout = read_preferences(run.path / "heldout.jsonl")[0]
        base, cfg = info["base"], info["config"]
        lr, batch_size, epochs, max_steps = cfg["lr"], cfg["batch_size"], cfg["epochs"], cfg["max_steps"]
        max_length, save_every, seed = cfg["max_length"], cfg["save_every"], cfg["seed"]
        lora_r, lora_alpha = cfg.get("lora_r", 0), cfg.get("lora_alpha", 0)  # older runs: full
    lora_alpha = (lora_alpha or 2 * lora_r) if lora_r else 0
    if not train:
        raise AppkitError("no training pairs")
    if threads:
        torch.set_num_threads(threads)
    if model is None:
        model, tokenizer = load_reward_base(base, log=log)
    elif tokenizer is None:
        raise AppkitError("a prebuilt reward model needs its tokenizer")
    check_tokenizer(model, tokenizer, f"reward base '{base}'")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    if resume is None:
        run = Run.create(name or f"{Path(base).name}-reward", {
            "method": "reward", "base": base, "pairs": len(train), "heldout_pairs": len(heldout),
            "pairs_hash": preferences_hash(train),
            "config": {"lr": lr, "batch_size": batch_size, "epochs": epochs,
                       "max_steps": max_steps, "max_length": max_length,
                       "save_every": save_every, "seed": seed,
                       "lora_r": lora_r, "lora_alpha": lora_alpha},
        })
        write_preferences(train, run.path / "train.jsonl")
        write_preferences(heldout, run.path / "heldout.jsonl")
    out_dir = run.path / "trl"
    args = trl.RewardConfig(
        output_dir=str(out_dir), per_device_train_batch_size=batch_size, learning_rate=lr,
        num_train_epochs=epochs, max_steps=max_steps or -1, max_length=None,
        logging_steps=1, save_strategy="steps", save_steps=max(1, save_every), save_total_limit=2,
        report_to=[], seed=seed, use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0, disable_tqdm=True, bf16=False, fp16=False,
    )

    def _on_log(state: Any, _control: Any, logs: dict[str, Any]) -> dict[str, str] | None:
        if "loss" not in logs:
            return None
        record = {"step": state.global_step, "loss": float(logs["loss"]),
                  **{k: float(logs[k]) for k in ("accuracy", "margin") if k in logs}}
        run.log(record)
        return {"loss": f"{record['loss']:.3f}"}

    loop = TrlLoop("reward model", interrupt=interrupt, on_log=_on_log, log=log)
    total_params = sum(p.numel() for p in model.parameters())
    trainer = trl.RewardTrainer(
        model=model, args=args, processing_class=tokenizer,
        train_dataset=datasets.Dataset.from_list(_records(train, tokenizer, max_length)),
        callbacks=[loop.callback(), *callbacks],
        peft_config=_lora_config(model, lora_r, lora_alpha) if lora_r else None)
    trainable_params = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    run.update(status="running")
    seconds, step, stopped = loop.train(trainer, resume=resume is not None)
    if stopped == "interrupted":
        run.update(status="interrupted", step=step, train_seconds=seconds)
        log(f"interrupted at step {step}; continue with: appkit align reward --resume {run.name}")
        return RewardResult(run, {"step": step}, interrupted=True)

    partial = run.path / "final.partial"
    shutil.rmtree(partial, ignore_errors=True)
    final = trainer.model
    if hasattr(final, "merge_and_unload"):  # LoRA: fold the adapter and the trained head in
        final = final.merge_and_unload()
    final.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    (partial / "reward.json").write_text(json.dumps({
        "prompt_format": PROMPT_FORMAT, "max_length": max_length, "base": base, "run": run.name,
    }, indent=2), encoding="utf-8")
    shutil.rmtree(run.final_dir, ignore_errors=True)
    os.replace(partial, run.final_dir)

    final.eval()
    # Scored from the saved folder, as the app loads it (the merged model, not the adapter).
    metrics = heldout_metrics(HFRewardModel(run.final_dir, name=run.name), heldout) \
        if heldout else {"accuracy": None, "pairs": 0}
    metrics.update(step=step, train_seconds=seconds, trainable_params=trainable_params,
                   total_params=total_params)
    run.update(status="finished", step=step, train_seconds=seconds, metrics=metrics)
    spec = None
    if register:
        spec = register_model(ModelSpec(
            name=run.name, role="reward", format="hf", local_path=str(run.final_dir),
            description=f"reward model on {Path(base).name}, held-out pairwise accuracy "
                        f"{metrics.get('accuracy')}",
            lineage={"base": base, "run": run.name, "method": "reward",
                     "pairs": len(train), "pairs_hash": run.info.get("pairs_hash"),
                     "heldout_pairs": len(heldout), "steps": step, "lora_r": lora_r,
                     "metrics": metrics,
                     "trained": time.strftime("%Y-%m-%dT%H:%M:%S")},
        ), persist=True)
    return RewardResult(run, metrics, spec)
