"""Supervised fine-tuning: a peft adapter (LoRA, IA3, prompt or prefix tuning; see
:mod:`finetune.peft_methods`) or full fine-tuning, with checkpoints, resume and Ctrl-C.

:class:`Trainer` runs a plain PyTorch loop over encoded examples: AdamW, warm-up then linear decay
(to the last step or the end of the time budget, whichever comes first),
gradient accumulation, a progress bar with the running loss, one ``log.jsonl`` line per logged
step, and a checkpoint (adapter or weights, optimizer, scheduler, step) every ``save_every`` steps.
Ctrl-C finishes the current step, writes a checkpoint and stops; a second Ctrl-C stops at once and
keeps the last complete checkpoint. :func:`train` with ``resume=`` continues from the newest
checkpoint with the same data order, so an interrupted run ends where an uninterrupted one would.
A GPU is used when torch sees one.

Example:
    >>> from finetune.trainer import TrainConfig
    >>> TrainConfig(base="smollm2-135m", data="train.jsonl").method
    'lora'
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from appkit.config import PromptConfig
from appkit.errors import AppkitError
from appkit.lazy import require
from finetune.data import Encoded, Example, data_hash, encode_example, read_rows
from finetune.peft_methods import LORA_TARGETS, PEFT_METHODS, is_peft, peft_config
from finetune.runs import Run

METHODS = ("full", *PEFT_METHODS)


def config_dict(config: Any) -> dict[str, Any]:
    """A run config as JSON-ready data: a dataclass with a ``prompt`` (:class:`PromptConfig`)."""
    data = asdict(config)
    data["prompt"] = {k: (list(v) if isinstance(v, tuple) else v)
                      for k, v in asdict(config.prompt).items()}
    return data


@dataclass
class TrainConfig:
    """What to train.

    Attributes:
        base: a catalogue name (GGUF) to start from.
        data: the training JSONL.
        method: a peft adapter (``lora``, ``ia3``, ``prompt-tuning``, ``prefix-tuning``) or
            ``full`` (every weight; meant for tiny models).
        r: LoRA rank.
        alpha: LoRA alpha (scale is alpha / r).
        dropout: LoRA dropout.
        targets: the projection names LoRA adapts.
        virtual_tokens: soft-prompt length of prompt and prefix tuning.
        lr: peak learning rate.
        batch_size: examples per micro-batch.
        grad_accum: micro-batches per optimizer step.
        epochs: passes over the data (used when ``max_steps`` is 0).
        max_steps: optimizer steps (0: from ``epochs``).
        max_minutes: stop (with a checkpoint) after this much training time, counted over every
            call of a resumed run (0: no limit). The learning rate decays to zero by then (or by
            ``max_steps``, whichever comes first).
        max_tokens: tokens per example (longer prompts are cut from the left).
        warmup: the share of steps with a rising learning rate.
        save_every: steps between checkpoints.
        log_every: steps between log lines.
        seed: data order and initialisation seed.
        threads: torch CPU threads (0: every core).
        prompt: the prompt used to render ``qa`` rows (the profile's).
    """

    base: str
    data: str
    method: Literal["lora", "ia3", "prompt-tuning", "prefix-tuning", "full"] = "lora"
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    targets: tuple[str, ...] = LORA_TARGETS
    virtual_tokens: int = 20
    lr: float = 2e-4
    batch_size: int = 2
    grad_accum: int = 1
    epochs: float = 1.0
    max_steps: int = 0
    max_minutes: float = 0.0
    max_tokens: int = 512
    warmup: float = 0.05
    save_every: int = 50
    log_every: int = 1
    seed: int = 0
    threads: int = 0
    prompt: PromptConfig = field(default_factory=PromptConfig)

    def to_dict(self) -> dict[str, Any]:
        return {**config_dict(self), "targets": list(self.targets)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        if "targets" in values:
            values["targets"] = tuple(values["targets"])
        if isinstance(values.get("prompt"), dict):
            from appkit.config import Profile

            values["prompt"] = Profile.from_dict({"prompt": values["prompt"]}).prompt
        return cls(**values)


@dataclass
class TrainResult:
    """How a training call ended."""

    run: Run
    status: Literal["finished", "interrupted", "time limit"]
    step: int
    total_steps: int
    last_loss: float | None
    seconds: float


def pick_device() -> str:
    """``cuda`` when torch sees a GPU, else ``cpu``."""
    torch = require("torch", extra="finetune")
    return "cuda" if torch.cuda.is_available() else "cpu"


def wrap_peft(model: Any, config: TrainConfig) -> Any:
    """Add a fresh adapter of ``config.method`` (LoRA on the ``config.targets`` the model has)."""
    peft = require("peft", extra="finetune")
    return peft.get_peft_model(model, peft_config(
        config.method, model, r=config.r, alpha=config.alpha, dropout=config.dropout,
        targets=config.targets, virtual_tokens=config.virtual_tokens))


def wrap_lora(model: Any, config: TrainConfig) -> Any:
    """Add a fresh LoRA adapter on the projections of ``config.targets`` that the model has."""
    from dataclasses import replace

    return wrap_peft(model, replace(config, method="lora"))


def collate(batch: Sequence[Encoded], pad_id: int) -> dict[str, Any]:
    """Right-pad a micro-batch; padding is masked from attention and loss."""
    torch = require("torch", extra="finetune")
    width = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e.input_ids)
        ids[i, :n] = torch.tensor(e.input_ids)
        labels[i, :n] = torch.tensor(e.labels)
        mask[i, :n] = 1
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def sample_order(n: int, total: int, seed: int) -> list[int]:
    """The example index of each of ``total`` draws: epoch after epoch, each freshly shuffled."""
    order: list[int] = []
    epoch = 0
    while len(order) < total:
        perm = list(range(n))
        random.Random(seed * 1_000_003 + epoch).shuffle(perm)
        order += perm
        epoch += 1
    return order[:total]


class _StopFlag:
    """The first Ctrl-C asks for a clean stop; the second one interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> _StopFlag:
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: no signal handling, training still works
            self._previous = None
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print("\nstopping after this step and writing a checkpoint (Ctrl-C again to stop now)",
              flush=True)

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class Trainer:
    """A training loop over encoded examples, with checkpoints in a :class:`Run`.

    Example:
        >>> from finetune.trainer import Trainer
        >>> Trainer.__name__
        'Trainer'

    Args:
        model: a torch causal LM (a peft model for LoRA).
        examples: encoded examples.
        config: the settings.
        run: where checkpoints and the log go.
        pad_id: the padding token id.
        log: where progress lines go.
        progress: show a tqdm progress bar.
    """

    def __init__(self, model: Any, examples: Sequence[Encoded], config: TrainConfig, run: Run,
                 *, pad_id: int, log: Callable[[str], None] = print, progress: bool = True):
        if not examples:
            raise AppkitError("no training examples")
        self.model = model
        self.examples = list(examples)
        self.config = config
        self.run = run
        self.pad_id = pad_id
        self.log = log
        self.progress = progress
        self.device = pick_device()
        per_step = config.batch_size * config.grad_accum
        self.total_steps = config.max_steps or max(
            1, math.ceil(config.epochs * len(self.examples) / per_step))
        self.order = sample_order(len(self.examples), self.total_steps * per_step, config.seed)
        torch = require("torch", extra="finetune")
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=0.0)
        warm = max(1, int(config.warmup * self.total_steps))
        self.seconds_before = 0.0  # training time of earlier calls of a resumed run
        self.started: float | None = None  # perf_counter() when this call's training began

        def schedule(step: int) -> float:
            if step < warm:
                return (step + 1) / warm
            by_steps = (step - warm) / max(1, self.total_steps - warm)
            return max(0.0, 1.0 - max(by_steps, self.budget_spent()))

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)
        self.step = 0
        self.stop_at = 0  # stop (as if interrupted) at this step; 0: never

    def training_seconds(self) -> float:
        """Training time of the run so far, across resumes."""
        now = 0.0 if self.started is None else time.perf_counter() - self.started
        return self.seconds_before + now

    def budget_spent(self) -> float:
        """The share of ``max_minutes`` used so far (0 when there is no time limit).

        The learning rate decays with whichever of steps and time runs out first, so a run that a
        time limit ends has annealed by then instead of stopping at its peak rate.
        """
        if not self.config.max_minutes:
            return 0.0
        return min(1.0, self.training_seconds() / (self.config.max_minutes * 60))

    # --- one step ------------------------------------------------------------------------------

    def micro_batches(self, step: int) -> list[dict[str, Any]]:
        c = self.config
        start = step * c.batch_size * c.grad_accum
        out = []
        for k in range(c.grad_accum):
            idx = self.order[start + k * c.batch_size: start + (k + 1) * c.batch_size]
            out.append(collate([self.examples[i] for i in idx], self.pad_id))
        return out

    def train_step(self, batches: Sequence[dict[str, Any]]) -> float:
        """Forward, backward and update on one optimizer step's micro-batches; returns the loss."""
        total = 0.0
        for batch in batches:
            batch = {k: v.to(self.device) for k, v in batch.items()}
            loss = self.model(**batch).loss / len(batches)
            loss.backward()
            total += float(loss.detach())
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total

    # --- checkpoints ---------------------------------------------------------------------------

    def save_checkpoint(self) -> Path:
        torch = require("torch", extra="finetune")
        tmp, final = self.run.new_checkpoint_dir(self.step)
        save_weights(self.model, tmp / "weights", self.config.method)
        torch.save({"optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict(),
                    "rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state_all() if self.device == "cuda" else None},
                   tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps({"step": self.step,
                                                    "total_steps": self.total_steps}))
        return self.run.commit_checkpoint(tmp, final)

    def load_checkpoint(self, path: Path) -> None:
        torch = require("torch", extra="finetune")
        load_weights(self.model, path / "weights", self.config.method)
        state = torch.load(path / "optimizer.pt", map_location=self.device, weights_only=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])  # dropout draws continue as if never interrupted
        if state.get("cuda_rng") is not None and self.device == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.step = json.loads((path / "state.json").read_text())["step"]
        self.seconds_before = float(self.run.info.get("train_seconds", 0.0))
        self.run.truncate_log(self.step)

    # --- the loop ------------------------------------------------------------------------------

    def fit(self) -> TrainResult:
        """Train to the end, to the time limit or to a Ctrl-C, checkpointing on the way."""
        c = self.config
        self.model.to(self.device)
        self.model.train()
        start = self.started = time.perf_counter()
        last: float | None = None
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps, initial=self.step, desc=f"training {self.run.name}",
                       unit="step", dynamic_ncols=True)
        status: Literal["finished", "interrupted", "time limit"] = "finished"
        self.run.update(status="running", total_steps=self.total_steps, device=self.device)
        with _StopFlag() as stop:
            try:
                while self.step < self.total_steps:
                    t0 = time.perf_counter()
                    last = self.train_step(self.micro_batches(self.step))
                    self.step += 1
                    if self.step % c.log_every == 0 or self.step == self.total_steps:
                        self.run.log({"step": self.step, "loss": round(last, 5),
                                      "lr": self.scheduler.get_last_lr()[0],
                                      "step_s": round(time.perf_counter() - t0, 3)})
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(loss=f"{last:.4f}")
                    if self.step % c.save_every == 0 and self.step < self.total_steps:
                        self.save_checkpoint()
                    if stop.requested or (self.stop_at and self.step >= self.stop_at):
                        status = "interrupted"
                        break
                    if c.max_minutes and self.training_seconds() > c.max_minutes * 60:
                        status = "time limit"
                        break
            finally:
                if bar is not None:
                    bar.close()
        seconds = time.perf_counter() - start
        self.save_checkpoint()
        if status != "interrupted":  # the step or time budget is spent: the model is done
            save_weights(self.model, self.run.final_dir, c.method, atomic=True)
        self.run.update(status="interrupted" if status == "interrupted" else "finished",
                        stopped_by=status, step=self.step, last_loss=last,
                        train_seconds=round(seconds + self.seconds_before, 1))
        return TrainResult(self.run, status, self.step, self.total_steps, last, seconds)


# --- weights ---------------------------------------------------------------------------------


def save_weights(model: Any, folder: Path, method: str, *, atomic: bool = False) -> Path:
    """Save the adapter (peft format) or every weight (full) as safetensors."""
    target = folder
    if atomic:
        folder = folder.with_name(folder.name + ".partial")
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    if is_peft(method):
        model.save_pretrained(str(folder))
    else:
        safetensors = require("safetensors.torch", extra="finetune", package="safetensors")
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        # tied embeddings share storage; safetensors stores each tensor once
        seen: dict[int, str] = {}
        for k in list(state):
            ptr = state[k].data_ptr()
            if ptr in seen:
                del state[k]
            else:
                seen[ptr] = k
        safetensors.save_file(state, str(folder / "model.safetensors"))
    if atomic:
        import shutil

        if target.exists():
            shutil.rmtree(target)
        os.replace(folder, target)
    return target


def load_weights(model: Any, folder: Path, method: str) -> None:
    """Load weights written by :func:`save_weights` into ``model`` in place."""
    if is_peft(method):
        peft = require("peft", extra="finetune")
        safetensors = require("safetensors.torch", extra="finetune", package="safetensors")
        state = safetensors.load_file(str(folder / "adapter_model.safetensors"))
        peft.set_peft_model_state_dict(model, state)
    else:
        safetensors = require("safetensors.torch", extra="finetune", package="safetensors")
        model.load_state_dict(safetensors.load_file(str(folder / "model.safetensors")),
                              strict=False)


# --- the whole command -------------------------------------------------------------------------


def encode_rows(rows: Sequence[Example], tokenizer: Any, *, chat_template: bool, max_tokens: int,
                prompt: PromptConfig) -> tuple[list[Encoded], int]:
    """Encode rows; returns the encoded examples and how many were cut to fit ``max_tokens``."""
    encoded = [encode_example(r, tokenizer, chat_template=chat_template, max_tokens=max_tokens,
                              prompt=prompt) for r in rows]
    return encoded, sum(e.truncated for e in encoded)


def build_model(config: TrainConfig, *, log: Callable[[str], None] = print,
                adapter: str | os.PathLike | None = None) -> tuple[Any, Any]:
    """Load the base, set threads and seed, and wrap it for ``config.method``.

    Args:
        config: the settings.
        log: where progress lines go.
        adapter: a saved adapter folder to continue training instead of a fresh one.

    Returns:
        ``(model, base)``: the trainable model and the :class:`~finetune.base.BaseModel`.
    """
    torch = require("torch", extra="finetune")
    from finetune.base import load_base

    torch.set_num_threads(config.threads or os.cpu_count() or 1)
    torch.manual_seed(config.seed)
    base = load_base(config.base, log=log)
    if is_peft(config.method):
        if adapter:
            peft = require("peft", extra="finetune")
            model = peft.PeftModel.from_pretrained(base.model, str(adapter), is_trainable=True)
        else:
            model = wrap_peft(base.model, config)
    elif config.method == "full":
        model = base.model
        for p in model.parameters():
            p.requires_grad_(True)
    else:
        raise AppkitError(f"unknown method '{config.method}'; use one of {', '.join(METHODS)}")
    return model, base


def train(config: TrainConfig | None = None, *, name: str = "", resume: str = "",
          log: Callable[[str], None] = print, progress: bool = True,
          stop_after: int = 0) -> TrainResult:
    """Train a new run, or continue run ``resume`` from its newest checkpoint.

    Args:
        config: the settings (read from the run when resuming).
        name: the new run's name (default: ``<base>-<method>-<time>``).
        resume: a run name or folder to continue.
        log: where progress lines go.
        progress: show a progress bar.
        stop_after: stop (as if interrupted) after this many steps in this call; for tests.

    Raises:
        AppkitError: unknown base, bad data, a run that already finished.
        DataError: malformed rows (file and line named), or no rows.
    """
    if resume:
        run = Run.open(resume)
        info = run.info
        if info.get("status") == "finished":
            raise AppkitError(f"run '{run.name}' already finished; nothing to resume")
        config = TrainConfig.from_dict(info["config"])
    elif config is None:
        raise AppkitError("nothing to train: give a config or a run to resume")
    if config.method not in METHODS:
        raise AppkitError(f"unknown method '{config.method}'; use one of {', '.join(METHODS)}")
    rows, _ = read_rows(config.data)
    if not rows:
        from finetune.data import DataError

        raise DataError(f"{config.data} holds no rows")
    digest = data_hash(rows)
    if resume and run.info.get("data_hash") != digest:
        raise AppkitError(f"{config.data} changed since run '{run.name}' started "
                          f"(data hash {digest}, was {run.info.get('data_hash')}); start a new run")
    from finetune.base import resolve_base

    spec, gguf_path = resolve_base(config.base)  # fails fast on an unknown base
    if not resume:
        name = name or f"{spec.name}-{config.method}-{time.strftime('%Y%m%d-%H%M%S')}"
        run = Run.create(name, {"base": spec.name, "base_gguf": str(gguf_path),
                                "method": config.method, "data": str(Path(config.data).resolve()),
                                "data_hash": digest, "rows": len(rows),
                                "config": config.to_dict()})
    model, base = build_model(config, log=log)
    encoded, cut = encode_rows(rows, base.tokenizer, chat_template=base.has_chat_template,
                               max_tokens=config.max_tokens, prompt=config.prompt)
    if cut:
        log(f"{cut} of {len(encoded)} examples were longer than {config.max_tokens} tokens and cut")
    run.update(chat_template=base.has_chat_template, hf_dir=str(base.hf_dir))
    trainer = Trainer(model, encoded, config, run, pad_id=base.tokenizer.pad_token_id, log=log,
                      progress=progress)
    if resume:
        checkpoint = run.latest_checkpoint()
        if checkpoint is not None:
            trainer.load_checkpoint(checkpoint)
            log(f"resuming run {run.name} at step {trainer.step} of {trainer.total_steps}")
    if stop_after:
        trainer.stop_at = trainer.step + stop_after
    return trainer.fit()
