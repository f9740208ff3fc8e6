"""Alignment with preferences: DPO (``trl``) on top of a LoRA run.

Preference pairs ``{"prompt", "chosen", "rejected"}`` come from three places:

* the app's feedback store (thumbs up/down and corrected answers, :mod:`appkit.feedback`);
* a JSONL file of pairs;
* :func:`auto_pairs`, built from QA rows: a question shown with an *unrelated* passage prefers
  "The documents do not say." over the (now unsupported) answer, and the same question with its
  own passage prefers the grounded answer over a refusal, so refusing is learned only where due.

Pairs are rendered with the same prompt and template as supervised training (and written to the
run's ``pairs.jsonl`` before training). The LoRA adapter of the parent run keeps training (trl
copies it as the frozen reference), so the result is one adapter that exports like any other run.
``sft_weight`` adds a likelihood term on the chosen answers (RPO). trl checkpoints every
``save_every`` steps; a first Ctrl-C keeps a checkpoint and marks the run ``interrupted``, and
``resume=`` continues it.

Example:
    >>> from finetune.data import Example
    >>> from finetune.dpo import auto_pairs
    >>> rows = [Example("Who?", "Ada", input="Ada wrote it.", group="a"),
    ...         Example("When?", "1843", input="It was 1843.", group="b")]
    >>> [p.kind for p in auto_pairs(rows)]
    ['unanswerable', 'answerable', 'unanswerable', 'answerable']
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from appkit.config import PromptConfig
from appkit.errors import AppkitError
from appkit.lazy import require
from finetune.check import REFUSAL
from finetune.data import DataError, Example, prompt_text, render_messages
from finetune.runs import Run, read_jsonl, write_jsonl
from finetune.trl_loop import (
    Interrupt, TrlLoop, resumable_run)


@dataclass(frozen=True)
class PreferencePair:
    """A question with its context, a preferred and a rejected answer.

    Attributes:
        question: the question.
        context: the passage shown ("" for none).
        chosen: the preferred answer.
        rejected: the worse answer.
        kind: where it came from (``unanswerable``, ``answerable``, ``correction``, ``rating``, ``file``).
        system: a system text that replaces the prompt's (feedback pairs keep the one they were
            answered with).
        prompt: an already rendered user message (feedback pairs); replaces question and context.
    """

    question: str
    chosen: str
    rejected: str
    context: str = ""
    kind: str = "file"
    system: str = ""
    prompt: str = ""

    def messages(self, prompt: PromptConfig | None) -> list[Any]:
        if self.prompt:
            from langchain_core.messages import HumanMessage, SystemMessage

            system = self.system or (prompt or PromptConfig()).system
            return [SystemMessage(system), HumanMessage(self.prompt)]
        return render_messages(Example(self.question, self.chosen, input=self.context,
                                       system=self.system), prompt)


def auto_pairs(rows: Sequence[Example], *, refusal: str = REFUSAL, seed: int = 0,
               answerable: bool = True) -> list[PreferencePair]:
    """Pairs from QA rows with passages: refuse on an unrelated passage, answer on the right one.

    Raises:
        DataError: fewer than two groups of passages (no unrelated passage to pair with).
    """
    qa = [r for r in rows if r.input]
    groups = {r.group or r.input for r in qa}
    if len(groups) < 2:
        raise DataError("automatic preference pairs need QA rows with passages from at least two "
                        "different groups or documents")
    rng = random.Random(seed)
    out: list[PreferencePair] = []
    for r in qa:
        key = r.group or r.input
        other = r
        while (other.group or other.input) == key:
            other = qa[rng.randrange(len(qa))]
        out.append(PreferencePair(r.instruction, refusal, r.output, context=other.input,
                                  kind="unanswerable"))
        if answerable:
            out.append(PreferencePair(r.instruction, r.output, refusal, context=r.input,
                                      kind="answerable"))
    return out


def feedback_pairs(data_dir: str | os.PathLike) -> list[PreferencePair]:
    """Pairs from the app's feedback store (``<data dir>/feedback.sqlite``)."""
    from appkit.feedback import stored_preference_pairs

    rows = stored_preference_pairs(data_dir)
    return [PreferencePair(p.get("question", ""), p["chosen"], p["rejected"], kind=p["origin"],
                           system=p.get("system", ""), prompt=p["prompt"]) for p in rows]


def read_pairs(path: str | os.PathLike) -> list[PreferencePair]:
    """Read pairs from JSONL: ``prompt`` or ``question`` (+ ``context``), ``chosen``, ``rejected``.

    Raises:
        DataError: naming the file and line of a malformed pair.
    """
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"cannot read the pairs file {p} ({exc})") from exc
    pairs = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            if not isinstance(d, dict):
                raise ValueError("expected a JSON object")
            for key in ("chosen", "rejected"):
                if not isinstance(d.get(key), str) or not d[key].strip():
                    raise ValueError(f"'{key}' is missing or empty")
            if not (d.get("prompt") or d.get("question")):
                raise ValueError("'prompt' or 'question' is needed")
            pairs.append(PreferencePair(d.get("question", ""), d["chosen"].strip(),
                                        d["rejected"].strip(), context=d.get("context", ""),
                                        kind=d.get("kind", d.get("origin", "file")),
                                        system=d.get("system", ""), prompt=d.get("prompt", "")))
        except ValueError as exc:
            msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            raise DataError(f"{p} line {number}: {msg}") from None
    return pairs


def write_pairs(pairs: Sequence[PreferencePair], path: str | os.PathLike) -> Path:
    """Write pairs as JSONL atomically."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text("".join(json.dumps(asdict(x), ensure_ascii=False) + "\n" for x in pairs),
                   encoding="utf-8")
    os.replace(tmp, p)
    return p


def _records_hash(records: Sequence[dict[str, str]]) -> str:
    return hashlib.sha256(json.dumps(list(records), sort_keys=True).encode()).hexdigest()[:16]


def train_dpo(parent: Run | str | None, pairs: Sequence[PreferencePair], *, name: str = "",
              beta: float = 0.1, lr: float = 5e-5, batch_size: int = 2, grad_accum: int = 1,
              max_steps: int = 0, epochs: float = 1.0, max_tokens: int = 512, threads: int = 0,
              seed: int = 0, sft_weight: float = 0.0, save_every: int = 10,
              max_minutes: float = 0.0, resume: Run | str | None = None,
              interrupt: Interrupt | None = None, callbacks: Sequence[Any] = (),
              log: Callable[[str], None] = print) -> Run:
    """Continue a LoRA run's adapter with DPO and save it as a new run.

    trl checkpoints into ``<run>/trl`` every ``save_every`` steps (the two newest are kept). A
    first Ctrl-C finishes the step, saves a checkpoint and stops: the run is marked
    ``interrupted``, has no ``final/`` and continues with ``resume``. A spent ``max_minutes``
    ends the run as finished (``stopped: "time limit"`` in run.json), with its adapter saved.

    Args:
        parent: the supervised LoRA run (ignored with ``resume``).
        pairs: preference pairs (ignored with ``resume``: the run's own ``pairs.jsonl`` is used).
        name: the new run's name (default: ``<parent>-dpo``).
        beta: DPO's beta (how far from the reference the policy may move).
        lr: learning rate.
        batch_size: pairs per micro-batch.
        grad_accum: micro-batches per step.
        max_steps: optimizer steps (0: from ``epochs``).
        epochs: passes over the pairs.
        max_tokens: longest prompt + answer.
        threads: torch threads (0: every core).
        seed: the seed.
        sft_weight: weight of a negative log-likelihood term on the chosen answers added to the
            DPO loss (RPO; trl ``loss_type=["sigmoid", "sft"]``), which keeps the chosen answers
            likely instead of only widening the margin (0: plain DPO).
        save_every: checkpoint every N steps.
        max_minutes: end this session after so many minutes, as a finished run (0: no limit).
        resume: an interrupted DPO run (or its name) to continue from its newest checkpoint, with
            its own pairs and settings (``threads``, ``max_minutes`` and ``save_every`` are this
            call's).
        interrupt: a stop flag checked after each step (default: set by Ctrl-C).
        callbacks: extra ``transformers`` trainer callbacks.
        log: where progress lines go.

    Returns:
        The run; ``run.info["status"]`` is ``finished`` or ``interrupted``.

    Raises:
        AppkitError: the parent is not a finished LoRA run, there are no pairs, or ``resume`` is
            not an unfinished DPO run.
    """
    if resume is not None:
        run = resumable_run(resume, "DPO", "dpo")
        saved = run.info
        parent = saved["parent"]
        d = saved["dpo"]
        beta, lr, batch_size, grad_accum = d["beta"], d["lr"], d["batch_size"], d["grad_accum"]
        max_steps, epochs = d["max_steps"], d["epochs"]
        max_tokens, seed = d.get("max_tokens", max_tokens), d.get("seed", seed)
        sft_weight = d.get("sft_weight", 0.0)
    if parent is None:
        raise AppkitError("DPO needs the LoRA run to continue (or --resume RUN)")
    parent = parent if isinstance(parent, Run) else Run.open(parent)
    info = parent.info
    if info.get("method") != "lora" or not parent.final_dir.exists():
        raise AppkitError(f"DPO continues a finished LoRA run; '{parent.name}' is "
                          f"{info.get('method')} and {info.get('status')}")
    if resume is None and not pairs:
        raise AppkitError("no preference pairs")
    if sft_weight < 0:
        raise AppkitError(f"sft_weight must be 0 or more, got {sft_weight}")
    torch = require("torch", extra="finetune")
    trl = require("trl", extra="finetune")
    datasets = require("datasets", extra="finetune")
    from finetune.trainer import TrainConfig, build_model, save_weights

    config = TrainConfig.from_dict(info["config"])
    config.threads, config.seed = threads, seed
    model, base = build_model(config, log=log, adapter=parent.final_dir)
    tok = base.tokenizer
    chat = base.has_chat_template
    if resume is None:
        records = []
        for p in pairs:
            text = prompt_text(p.messages(config.prompt), tok, chat)
            lead = "" if chat else " "
            records.append({"prompt": text, "chosen": lead + p.chosen,
                            "rejected": lead + p.rejected})
        run = Run.create(name or f"{parent.name}-dpo", {
            "base": info["base"], "base_gguf": info["base_gguf"], "method": "lora",
            "parent": parent.name, "data": info.get("data"), "data_hash": info.get("data_hash"),
            "pairs": len(records), "pairs_hash": _records_hash(records),
            "hf_dir": info.get("hf_dir"), "chat_template": chat, "config": info["config"],
            "dpo": {"beta": beta, "lr": lr, "batch_size": batch_size, "grad_accum": grad_accum,
                    "max_steps": max_steps, "epochs": epochs, "max_tokens": max_tokens,
                    "seed": seed, "sft_weight": sft_weight, "save_every": save_every},
        })
        write_jsonl(records, run.path / "pairs.jsonl")
    else:
        records = read_jsonl(run.path / "pairs.jsonl", "pairs")
        if _records_hash(records) != run.info.get("pairs_hash"):
            raise AppkitError(f"{run.path / 'pairs.jsonl'} is not what run '{run.name}' trained "
                              "on (its hash differs); start a new run instead")
    out_dir = run.path / "trl"
    losses = {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, sft_weight]} \
        if sft_weight > 0 else {}
    args = trl.DPOConfig(
        output_dir=str(out_dir), per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum, learning_rate=lr, beta=beta,
        max_steps=max_steps or -1, num_train_epochs=epochs, max_length=max_tokens,
        logging_steps=1, save_strategy="steps", save_steps=max(1, save_every),
        save_total_limit=2, report_to=[], seed=seed,
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0,
        disable_tqdm=True, bf16=False, fp16=False, **losses,
    )

    def _on_log(state: Any, _control: Any, logs: dict[str, Any]) -> dict[str, str] | None:
        if "loss" not in logs:
            return None
        run.log({"step": state.global_step, "loss": logs["loss"],
                 **{k: logs[k] for k in ("rewards/accuracies", "rewards/margins") if k in logs}})
        return {"loss": f"{float(logs['loss']):.3f}"}

    loop = TrlLoop("DPO", interrupt=interrupt, max_minutes=max_minutes, on_log=_on_log, log=log)
    trainer = trl.DPOTrainer(model=model, args=args, processing_class=tok,
                             train_dataset=datasets.Dataset.from_list(records),
                             callbacks=[loop.callback(), *callbacks])
    run.update(status="running")
    seconds, step, stopped = loop.train(trainer, resume=resume is not None, run=run)
    seconds = round(seconds + (run.info.get("train_seconds") or 0), 1)
    if stopped == "interrupted":
        run.update(status="interrupted", step=step, train_seconds=seconds)
        log(f"interrupted at step {step}; continue with: appkit finetune dpo --resume {run.name}")
        return run
    model = trainer.model
    if "ref" in getattr(model, "peft_config", {}):  # trl's frozen copy of the parent's adapter
        model.delete_adapter("ref")
    save_weights(model, run.final_dir, "lora", atomic=True)
    run.update(status="finished", step=step, train_seconds=seconds, stopped=stopped)
    return run
