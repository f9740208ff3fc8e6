"""Distillation: train a small student to imitate a larger teacher (``appkit finetune distill``).

Two modes, chosen by whether the two models share a vocabulary:

* **logit** (same vocabulary): on every token of the training texts the student is trained to
  match the teacher's next-token distribution, with the generalized Jensen-Shannon divergence of
  trl's GKD (Agarwal et al. 2024, Eq. 1) at a softmax ``temperature``: ``beta = 0`` is the forward
  KL ``KL(teacher || student)`` (the default, classic knowledge distillation), ``beta = 1`` the
  reverse KL, values between a JSD. The loss is :func:`divergence`, written here with trl's exact
  definition (a test checks it against ``trl.experimental.gkd.GKDTrainer.generalized_jsd_loss``)
  rather than by running ``GKDTrainer`` itself: that trainer is an ``SFTTrainer`` (datasets,
  accelerate, chat-format rows, its own checkpoints, on-policy sampling), costs about 10 s to
  import on a laptop, and would bypass the project's loop. Training runs in
  :class:`~finetune.trainer.Trainer` (checkpoints, Ctrl-C, ``log.jsonl`` loss curve) with the step
  replaced by :class:`LogitTrainer`. Both models are loaded with transformers (a catalogue GGUF is
  converted once to float32, see :mod:`finetune.base`).
* **sequence** (different vocabularies, e.g. Qwen2.5 0.5B -> SmolLM2-135M): the teacher answers
  every training prompt (greedy, at most ``max_new_tokens``), through the app's own chat models
  (llama.cpp for a GGUF, transformers for a folder) and the app's prompts; the student is then
  fine-tuned on the (prompt, teacher answer) pairs with the ordinary SFT path of
  :mod:`finetune.trainer`. Only prompts are needed in the data.

``mode="auto"`` compares the vocabularies (the GGUF token list, or the tokenizer's ``get_vocab``):
logit when they are equal, else sequence. ``mode="logit"`` with different vocabularies is a
:class:`VocabularyMismatchError` that suggests ``--mode sequence``.

The student's weights land in a transformers folder under
``<appkit cache>/finetune/exports/NAME/transformers``
registered in the catalogue as ``NAME`` (format ``hf``, served by
:class:`~appkit.models.transformers_chat.TransformersChatModel`) with lineage: teacher, student
base, mode, data and its hash, run, steps, loss. A student that came from a catalogue GGUF is a
normal ``full`` / ``lora`` run too, so ``appkit finetune export RUN`` also writes it as a GGUF.

Example:
    >>> from finetune.distill import DistillConfig
    >>> DistillConfig(teacher="qwen2.5-coder-0.5b", student="smollm2-135m", data="d.jsonl").mode
    'auto'
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from appkit.config import PromptConfig
from appkit.errors import AppkitError
from appkit.jsonl import read_jsonl
from appkit.lazy import require
from finetune.base import model_folder, new_model_name
from finetune.data import DataError, Encoded, Example, data_hash, encode_example, render_messages
from finetune.runs import Run
from finetune.trainer import Trainer, TrainConfig, collate, config_dict

Mode = Literal["auto", "logit", "sequence"]
MODES = ("auto", "logit", "sequence")
STUDENT_METHODS = ("full", "lora")
KEEP = ("all", "grounded", "spans")


class VocabularyMismatchError(AppkitError):
    """Logit distillation was asked for two models whose vocabularies differ."""


@dataclass
class DistillConfig:
    """What to distill.

    Example:
        >>> from finetune.distill import DistillConfig
        >>> DistillConfig("big-model", "small-model", "train.jsonl", mode="sequence").beta
        0.0

    Attributes:
        teacher: a catalogue name (GGUF or ``hf``) or a transformers folder.
        student: a catalogue GGUF name (converted once to float32) or a transformers folder.
        data: JSONL rows (``instruction``/``question``/``prompt``, optional ``input`` and
            ``output``); sequence mode needs only the prompts.
        mode: ``auto``, ``logit`` or ``sequence`` (see the module docs).
        method: how the student is trained: ``full`` (every weight) or ``lora`` (merged at the
            end).
        temperature: softmax temperature of both distributions (logit mode).
        beta: generalized JSD mix: 0 forward KL, 1 reverse KL (logit mode).
        max_new_tokens: longest teacher answer (sequence mode).
        teacher_answers: a JSONL of the teacher's answers to these prompts (an earlier run's
            ``teacher.jsonl``), used instead of asking the teacher again (sequence mode).
        keep: which teacher answers become targets (sequence mode): ``all``; ``grounded``:
            only answers found word for word in the row's ``input``, and refusals (extractive
            tasks: a wrong answer is usually one the context does not contain); ``spans``: only
            the answers found in the input (every question answerable from its input, so a
            refusal is a teacher mistake too).
        lr: peak learning rate (0: 2e-5 full, 2e-4 LoRA, the trainer's defaults).
        batch_size: examples per micro-batch.
        grad_accum: micro-batches per optimizer step.
        epochs: passes over the data (used when ``max_steps`` is 0).
        max_steps: optimizer steps (0: from ``epochs``).
        max_minutes: training time budget (0: no limit); the learning rate decays to zero by
            its end, as in :class:`~finetune.trainer.TrainConfig`.
        max_tokens: tokens per training text.
        save_every: steps between checkpoints.
        seed: data order and initialisation seed.
        threads: torch CPU threads (0: every core).
        prompt: how rows become prompts (the profile's).
    """

    teacher: str
    student: str
    data: str
    mode: Mode = "auto"
    method: Literal["full", "lora"] = "full"
    temperature: float = 1.0
    beta: float = 0.0
    max_new_tokens: int = 64
    teacher_answers: str = ""
    keep: Literal["all", "grounded", "spans"] = "all"
    lr: float = 0.0
    batch_size: int = 2
    grad_accum: int = 1
    epochs: float = 1.0
    max_steps: int = 0
    max_minutes: float = 0.0
    max_tokens: int = 256
    save_every: int = 50
    seed: int = 0
    threads: int = 0
    prompt: PromptConfig = field(default_factory=PromptConfig)

    def train_config(self) -> TrainConfig:
        """The settings of the student's training loop."""
        from finetune.peft_methods import DEFAULT_LR

        return TrainConfig(
            base=self.student, data=self.data, method=self.method,
            lr=self.lr or DEFAULT_LR[self.method], dropout=0.0, batch_size=self.batch_size,
            grad_accum=self.grad_accum, epochs=self.epochs, max_steps=self.max_steps,
            max_minutes=self.max_minutes, max_tokens=self.max_tokens, save_every=self.save_every,
            seed=self.seed, threads=self.threads, prompt=self.prompt)

    def to_dict(self) -> dict[str, Any]:
        return config_dict(self)


@dataclass
class DistillResult:
    """How a distillation ended: the run, the mode used and the registered student."""

    run: Run
    mode: str
    status: str
    step: int
    total_steps: int
    last_loss: float | None
    model: Any  # the registered ModelSpec, or None when interrupted
    seconds: float


# --- data --------------------------------------------------------------------------------------


def read_prompts(path: str | os.PathLike) -> list[Example]:
    """Read distillation rows: a prompt (``instruction``, ``question`` or ``prompt``), optional
    ``input``/``context`` and an optional ``output``/``response`` (unused by sequence mode).

    Raises:
        DataError: the file is missing or unreadable, holds no rows, or a line is not a JSON
            object with a non-empty prompt (naming the file and line).
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"no such data file: {p}")
    rows: list[Example] = []
    for number, data in read_jsonl(p, "the data file", DataError):
        data = dict(data)
        eval_set = "question" in data and ("reference_contexts" in data or "contexts" in data)
        if "instruction" not in data and not eval_set:
            for key in ("question", "prompt"):
                if key in data:
                    data["instruction"] = data.pop(key)
                    break
        output = next((data[k] for k in ("output", "response", "reference", "answer")
                       if data.get(k)), "")
        has_output = bool(output)
        # a placeholder when there is no answer: the prompt alone is a valid row here
        data["output"] = data["reference"] = output or "-"
        try:
            row = Example.from_dict(data)
        except ValueError as exc:
            msg = str(exc).replace("'instruction'", "the prompt ('instruction', 'question' or "
                                                    "'prompt')")
            raise DataError(f"{p}, line {number}: {msg}") from None
        rows.append(row if has_output else replace(row, output=""))
    if not rows:
        raise DataError(f"{p} holds no rows; write one JSON object per line with a prompt")
    return rows


# --- models ------------------------------------------------------------------------------------


def load_causal_lm(ref: str, *, log: Callable[[str], None] = print) -> tuple[Any, Any, bool]:
    """``(model, tokenizer, chat_template)`` of a reference, float32 on the CPU."""
    transformers = require("transformers", extra="finetune")
    folder, spec = model_folder(ref, log=log)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype="float32")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    templated = bool(getattr(tokenizer, "chat_template", None)) and (
        spec is None or spec.role == "chat")
    return model, tokenizer, templated


def vocabulary(ref: str) -> list[str]:
    """The tokens of a model by id: a GGUF's token list (nothing loaded), else its tokenizer's."""
    folder = Path(os.path.expanduser(ref))
    if not folder.is_dir():
        from appkit.models.catalogue import resolve_model

        spec, path = resolve_model(ref)
        if spec.format == "gguf" and Path(path).suffix == ".gguf":
            gguf = require("gguf", extra="finetune")
            reader = gguf.GGUFReader(str(path))
            f = reader.fields["tokenizer.ggml.tokens"]
            return [bytes(f.parts[i]).decode("utf-8", errors="replace") for i in f.data]
        folder, _ = model_folder(ref)
    transformers = require("transformers", extra="finetune")
    return tokens_of(transformers.AutoTokenizer.from_pretrained(str(folder)))


def tokens_of(tokenizer: Any) -> list[str]:
    """A tokenizer's vocabulary as a list indexed by token id."""
    vocab = tokenizer.get_vocab()
    out = [""] * (max(vocab.values()) + 1 if vocab else 0)
    for token, i in vocab.items():
        out[i] = token
    return out


def vocabulary_difference(teacher_vocab: Sequence[str], student_vocab: Sequence[str], *,
                          teacher: str = "teacher", student: str = "student") -> str:
    """How two vocabularies differ, in words, or "" when they are one (same tokens, same ids):
    the condition for comparing logits position by position.

    Example:
        >>> vocabulary_difference(["a", "b"], ["b", "a"], teacher="T", student="S")
        'T has 2 tokens and S 2 (2 in common, or in another order)'
    """
    if list(teacher_vocab) == list(student_vocab):
        return ""
    shared = len(set(teacher_vocab) & set(student_vocab))
    return (f"{teacher} has {len(teacher_vocab)} tokens and {student} {len(student_vocab)} "
            f"({shared} in common, or in another order)")


def pick_mode(mode: str, teacher_vocab: Sequence[str], student_vocab: Sequence[str], *,
              teacher: str = "teacher", student: str = "student") -> str:
    """Resolve ``auto`` and check ``logit``: logit needs the same vocabulary.

    Raises:
        VocabularyMismatchError: ``logit`` with different vocabularies.
        AppkitError: an unknown mode.
    """
    if mode not in MODES:
        raise AppkitError(f"unknown distillation mode '{mode}'; use one of {', '.join(MODES)}")
    differ = vocabulary_difference(teacher_vocab, student_vocab, teacher=teacher,
                                   student=student)
    if mode == "logit" and differ:
        raise VocabularyMismatchError(
            f"logit distillation needs one vocabulary, but {differ}; use --mode sequence (the "
            "student learns from the teacher's answers)")
    if mode == "auto":
        return "sequence" if differ else "logit"
    return mode


# --- logit distillation ------------------------------------------------------------------------


def divergence(student_logits: Any, teacher_logits: Any, mask: Any, *, beta: float = 0.0,
               temperature: float = 1.0) -> Any:
    """Generalized JSD between teacher and student next-token distributions, averaged over the
    positions where ``mask`` is true (trl GKD's definition; ``beta=0``: ``KL(teacher||student)``).

    Args:
        student_logits: ``(batch, seq, vocab)``.
        teacher_logits: the same shape (cut both to the shared vocabulary first).
        mask: ``(batch, seq)``; true where the position counts.
        beta: 0 forward KL, 1 reverse KL, between: the JSD with mixture weight ``beta``.
        temperature: both logits are divided by it.
    """
    torch = require("torch", extra="finetune")
    f = torch.nn.functional
    s = f.log_softmax(student_logits / temperature, dim=-1)
    t = f.log_softmax(teacher_logits / temperature, dim=-1)
    if beta == 0:
        per = f.kl_div(s, t, reduction="none", log_target=True)
    elif beta == 1:
        per = f.kl_div(t, s, reduction="none", log_target=True)
    else:
        b = torch.tensor(beta, dtype=s.dtype, device=s.device)
        mix = torch.logsumexp(torch.stack([s + torch.log1p(-b), t + torch.log(b)]), dim=0)
        per = (beta * f.kl_div(mix, t, reduction="none", log_target=True)
               + (1 - beta) * f.kl_div(mix, s, reduction="none", log_target=True))
    mask = mask.bool()
    return per.sum(-1)[mask].sum() / mask.sum().clamp_min(1)


def _shared_logits(student: Any, teacher: Any, batch: dict[str, Any]) -> tuple[Any, Any]:
    torch = require("torch", extra="finetune")
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        t = teacher(**inputs).logits
    s = student(**inputs).logits
    n = min(s.shape[-1], t.shape[-1])  # embedding tables may be padded past the tokenizer
    return s[..., :n], t[..., :n]


DISTILL_TOKENS = ("all", "answers")


def check_distill_mix(tokens: str, answer_weight: float) -> None:
    """Reject a distillation mix :class:`LogitTrainer` cannot train.

    Raises:
        AppkitError: ``tokens`` not one of :data:`DISTILL_TOKENS`, or ``answer_weight``
            outside [0, 1].
    """
    if tokens not in DISTILL_TOKENS:
        raise AppkitError(f"distill-on must be one of {', '.join(DISTILL_TOKENS)}, got "
                          f"'{tokens}'")
    if not 0.0 <= answer_weight <= 1.0:
        raise AppkitError(f"answer-weight is the answer loss's share of the recovery loss, "
                          f"between 0 and 1; got {answer_weight}")


class LogitTrainer(Trainer):
    """The project's training loop with the step's loss replaced by :func:`divergence` to a
    frozen teacher, on every non-padding token or on the answer tokens only, optionally mixed
    with the usual loss on the answers.

    Example:
        >>> from finetune.distill import LogitTrainer
        >>> LogitTrainer.__mro__[1].__name__
        'Trainer'

    Args:
        model: the student (a full model or a peft model).
        teacher: the teacher, same vocabulary.
        examples: encoded training texts (the student's and teacher's shared tokenizer).
        config: the loop's settings.
        run: where checkpoints and the log go.
        pad_id: the padding id.
        beta: generalized JSD mix (0: forward KL).
        temperature: softmax temperature.
        tokens: where the divergence counts: ``all`` non-padding tokens, or ``answers`` (the
            positions that predict an answer token, where the task's score is decided).
        answer_weight: share of the loss that is the student's own cross-entropy on the
            answers (0: distillation only; 0.5: an even mix).
        **kwargs: ``log`` and ``progress`` as for :class:`~finetune.trainer.Trainer`.
    """

    def __init__(self, model: Any, teacher: Any, examples: Sequence[Encoded], config: TrainConfig,
                 run: Run, *, pad_id: int, beta: float = 0.0, temperature: float = 1.0,
                 tokens: str = "all", answer_weight: float = 0.0, **kwargs: Any):
        check_distill_mix(tokens, answer_weight)
        super().__init__(model, examples, config, run, pad_id=pad_id, **kwargs)
        self.teacher = teacher.to(self.device).eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        self.beta = beta
        self.temperature = temperature
        self.tokens = tokens
        self.answer_weight = answer_weight

    def step_loss(self, batch: dict[str, Any]) -> Any:
        """The distillation loss of one micro-batch (mixed with the answer loss if asked)."""
        torch = require("torch", extra="finetune")
        s, t = _shared_logits(self.model, self.teacher, batch)
        labels = batch["labels"]
        if self.tokens == "answers":  # position i predicts token i + 1
            mask = torch.zeros_like(labels, dtype=torch.bool)
            mask[:, :-1] = labels[:, 1:] != -100
        else:
            mask = batch["attention_mask"]
        loss = divergence(s, t, mask, beta=self.beta, temperature=self.temperature)
        if self.answer_weight:
            ce = torch.nn.functional.cross_entropy(
                s[:, :-1].reshape(-1, s.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)
            loss = (1 - self.answer_weight) * loss + self.answer_weight * ce
        return loss

    def train_step(self, batches: Sequence[dict[str, Any]]) -> float:
        total = 0.0
        for batch in batches:
            batch = {k: v.to(self.device) for k, v in batch.items()}
            loss = self.step_loss(batch) / len(batches)
            loss.backward()
            total += float(loss.detach())
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total


def mean_divergence(student: Any, teacher: Any, examples: Sequence[Encoded], *, pad_id: int,
                    beta: float = 0.0, temperature: float = 1.0, batch_size: int = 8) -> float:
    """The token-averaged divergence of ``student`` to ``teacher`` on texts (no training)."""
    torch = require("torch", extra="finetune")
    device = next(student.parameters()).device
    was = student.training
    student.eval()
    teacher.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            batch = {k: v.to(device) for k, v in
                     collate(examples[i:i + batch_size], pad_id).items()}
            s, t = _shared_logits(student, teacher, batch)
            n = int(batch["attention_mask"].sum())
            total += float(divergence(s, t, batch["attention_mask"], beta=beta,
                                      temperature=temperature)) * n
            tokens += n
    student.train(was)
    return total / max(tokens, 1)


# --- sequence-level distillation ----------------------------------------------------------------


def teacher_chat_model(teacher: str, *, max_new_tokens: int, profile: Any = None) -> Any:
    """The teacher as the app's chat model, greedy: llama.cpp for a GGUF, transformers for a
    folder or an ``hf`` entry."""
    folder = Path(os.path.expanduser(teacher))
    if folder.is_dir():
        from appkit.models.transformers_chat import TransformersChatModel

        return TransformersChatModel(model_path=str(folder), max_tokens=max_new_tokens,
                                     temperature=0.0, repeat_penalty=1.0)
    from appkit.config import Profile
    from appkit.models import make_chat_model

    return make_chat_model(profile or Profile(), teacher, max_tokens=max_new_tokens,
                           temperature=0.0, repeat_penalty=1.0)


def teacher_answers(rows: Sequence[Example], chat_model: Any, *, prompt: PromptConfig | None = None,
                    log: Callable[[str], None] = print, progress: bool = True) -> list[Example]:
    """Each row with its ``output`` replaced by the teacher's answer to its prompt (the app's
    own messages); rows the teacher leaves empty are dropped.

    Raises:
        AppkitError: the teacher answered none of the prompts.
    """
    out: list[Example] = []
    items: Any = rows
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(rows, desc="teacher answers", unit="prompt", dynamic_ncols=True)
    for row in items:
        reply = chat_model.invoke(render_messages(row, prompt))
        text = str(reply.content).strip()
        if text:
            out.append(replace(row, output=text))
    if not out:
        raise AppkitError(f"the teacher answered none of the {len(rows)} prompts (all empty); "
                          "check the teacher model and --max-new-tokens")
    if len(out) < len(rows):
        log(f"{len(rows) - len(out)} of {len(rows)} teacher answers were empty and dropped")
    return out


def saved_answers(rows: Sequence[Example], path: str | os.PathLike) -> list[Example]:
    """Each row with the teacher's answer from ``path`` (an earlier run's ``teacher.jsonl``),
    matched by prompt and input, so a second student needs no second pass of the teacher.

    Raises:
        DataError: the file is missing or malformed, or a prompt has no answer in it (the count
            and the first such prompt named).
    """
    from finetune.data import read_rows

    p = Path(path)
    answers = {(r.instruction, r.input): r.output for r in read_rows(p)[0]}
    missing = [r for r in rows if (r.instruction, r.input) not in answers]
    if missing:
        raise DataError(f"{p} has no answer for {len(missing)} of the {len(rows)} prompts "
                        f"(first: {missing[0].instruction[:60]!r}); it must hold the teacher's "
                        "answers to this data file (a run's teacher.jsonl)")
    return [replace(r, output=answers[(r.instruction, r.input)]) for r in rows]


def _squeeze(text: str) -> str:
    return " ".join(text.lower().split())


def in_input(row: Example) -> bool:
    """Whether the answer appears word for word in the row's input (case and spacing ignored, a
    final full stop dropped).

    Example:
        >>> in_input(Example("Who?", "Ada Lovelace.", input="It was Ada  Lovelace."))
        True
    """
    answer = _squeeze(row.output).rstrip(".").strip()
    return bool(answer) and answer in _squeeze(row.input)


def is_grounded(row: Example) -> bool:
    """Whether the answer is a refusal or appears word for word in the row's input.

    Example:
        >>> is_grounded(Example("Who?", "The documents do not say.", input="It was Ada."))
        True
    """
    from eval.metrics.alignment import is_refusal

    return is_refusal(row.output) or in_input(row)


_FILTERS = {"grounded": (is_grounded, "grounded in the input or refusals"),
            "spans": (in_input, "found in the input")}


def keep_answers(rows: Sequence[Example], keep: str, *, log: Callable[[str], None] = print
                 ) -> list[Example]:
    """The teacher answers that become training targets under ``keep`` (see
    :class:`DistillConfig`).

    Raises:
        AppkitError: an unknown ``keep``, or no answer passes the filter.
    """
    if keep not in KEEP:
        raise AppkitError(f"unknown keep '{keep}'; use {_choices()}")
    if keep == "all":
        return list(rows)
    passes, what = _FILTERS[keep]
    kept = [r for r in rows if passes(r)]
    if not kept:
        raise AppkitError(f"none of the {len(rows)} teacher answers is {what} (--keep {keep}); "
                          "use --keep all (or rows with an 'input' context)")
    log(f"kept {len(kept)} of {len(rows)} teacher answers ({what})")
    return kept


def _choices() -> str:
    return f"{', '.join(KEEP[:-1])} or {KEEP[-1]}"


# --- the whole command -------------------------------------------------------------------------


def _student_model(model: Any, method: str, config: TrainConfig) -> Any:
    if method == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    from finetune.trainer import wrap_peft

    return wrap_peft(model, config)


def save_student(model: Any, tokenizer: Any, name: str, *, log: Callable[[str], None] = print
                 ) -> Path:
    """Write the student (LoRA merged) as a transformers folder ``exports/NAME/transformers``
    (written to a temporary folder, then renamed)."""
    from finetune.export import exports_dir

    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    folder = exports_dir() / name / "transformers"  # GGUF exports of the run sit beside it
    tmp = exports_dir() / f".{name}.{os.getpid()}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        if folder.exists():
            shutil.rmtree(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"student written to {folder}")
    return folder


def distill(config: DistillConfig, *, name: str = "", profile: Any = None,
            log: Callable[[str], None] = print, progress: bool = True,
            register: bool = True) -> DistillResult:
    """Distill ``config.teacher`` into ``config.student`` and register the student.

    Args:
        config: the settings.
        name: the run and catalogue name (default: ``<student>-distill-<time>``).
        profile: supplies llama.cpp settings for a GGUF teacher (default: a plain profile).
        log: where progress lines go.
        progress: show progress bars.
        register: add the student to the catalogue (``registry.json``).

    Raises:
        DataError: missing or malformed data (file and line named).
        VocabularyMismatchError: logit mode with different vocabularies.
        AppkitError: unknown models, a name taken by a built-in model or an existing run.
    """
    if config.method not in STUDENT_METHODS:
        raise AppkitError(f"unknown student method '{config.method}'; use "
                          f"{' or '.join(STUDENT_METHODS)}")
    if config.mode not in MODES:
        raise AppkitError(f"unknown distillation mode '{config.mode}'; use one of "
                          f"{', '.join(MODES)}")
    if config.keep not in KEEP:
        raise AppkitError(f"unknown keep '{config.keep}'; use {_choices()}")
    rows = read_prompts(config.data)
    name = new_model_name(config.student, "distill", name)
    mode = pick_mode(config.mode, vocabulary(config.teacher), vocabulary(config.student),
                     teacher=config.teacher, student=config.student)
    if mode == "logit" and (config.teacher_answers or config.keep != "all"):
        raise AppkitError("--teacher-answers and --keep apply to sequence-level distillation; "
                          "logit mode learns from the teacher's distributions, not its answers")
    if config.teacher_answers:
        rows = saved_answers(rows, config.teacher_answers)  # before any run folder is made
    torch = require("torch", extra="finetune")
    torch.set_num_threads(config.threads or os.cpu_count() or 1)
    torch.manual_seed(config.seed)
    train_config = config.train_config()
    start = time.perf_counter()

    _, student_spec = model_folder(config.student, log=log)
    info: dict[str, Any] = {
        "base": student_spec.name if student_spec else str(config.student),
        "method": config.method, "distill": {"teacher": config.teacher, "mode": mode},
        "data": str(Path(config.data).resolve()), "data_hash": data_hash(rows),
        "rows": len(rows), "config": train_config.to_dict(),
        "distill_config": config.to_dict(),
    }
    if student_spec is not None and student_spec.format == "gguf":
        from finetune.base import resolve_base

        info["base_gguf"] = str(resolve_base(config.student)[1])  # so 'export RUN' makes a GGUF
    run = Run.create(name, info)

    if mode == "sequence":
        from finetune.data import write_rows

        t0 = time.perf_counter()
        if not config.teacher_answers:
            chat = teacher_chat_model(config.teacher, max_new_tokens=config.max_new_tokens,
                                      profile=profile)
            log(f"the teacher {config.teacher} answers {len(rows)} prompts (greedy, at most "
                f"{config.max_new_tokens} tokens)")
            rows = teacher_answers(rows, chat, prompt=config.prompt, log=log, progress=progress)
        write_rows(rows, run.path / "teacher.jsonl")
        run.update(teacher_seconds=round(time.perf_counter() - t0, 1),
                   teacher_rows=len(rows), teacher_file=str(run.path / "teacher.jsonl"))
        try:
            rows = keep_answers(rows, config.keep, log=log)
        except AppkitError as exc:
            raise AppkitError(f"{exc}; the teacher's answers are kept in "
                              f"{run.path / 'teacher.jsonl'} for --teacher-answers") from None
        run.update(target_rows=len(rows))

    model, tokenizer, templated = load_causal_lm(config.student, log=log)
    folder, _ = model_folder(config.student, log=log)
    run.update(hf_dir=str(folder), chat_template=templated)
    student = _student_model(model, config.method, train_config)
    encoded = [encode_example(r, tokenizer, chat_template=templated, max_tokens=config.max_tokens,
                              prompt=config.prompt) for r in rows]
    if mode == "logit":
        teacher, _, _ = load_causal_lm(config.teacher, log=log)
        trainer: Trainer = LogitTrainer(
            student, teacher, encoded, train_config, run, pad_id=tokenizer.pad_token_id,
            beta=config.beta, temperature=config.temperature, log=log, progress=progress)
    else:
        trainer = Trainer(student, encoded, train_config, run, pad_id=tokenizer.pad_token_id,
                          log=log, progress=progress)
    result = trainer.fit()
    spec = None
    if result.status != "interrupted":
        spec = register_student(run, trainer.model, tokenizer, name=name, mode=mode,
                                config=config, templated=templated, student_spec=student_spec,
                                register=register, log=log)
    return DistillResult(run, mode, result.status, result.step, result.total_steps,
                         result.last_loss, spec, time.perf_counter() - start)


def register_student(run: Run, model: Any, tokenizer: Any, *, name: str, mode: str,
                     config: DistillConfig, templated: bool, student_spec: Any,
                     register: bool = True, log: Callable[[str], None] = print) -> Any:
    """Save the trained student and add it to the catalogue with its lineage."""
    from appkit.models.catalogue import ModelSpec, register_model

    folder = save_student(model, tokenizer, name, log=log)
    info = run.info
    role = student_spec.role if student_spec is not None else (
        "chat" if templated else "completion")
    spec = ModelSpec(
        name=name, role=role, format="hf", local_path=str(folder),
        size=sum(f.stat().st_size for f in folder.iterdir() if f.is_file()),
        lineage={"teacher": config.teacher, "base": info.get("base"), "mode": mode,
                 "method": config.method, "data": info.get("data"),
                 "data_hash": info.get("data_hash"), "run": run.name, "steps": info.get("step"),
                 "last_loss": info.get("last_loss"), "distilled": time.strftime(
                     "%Y-%m-%dT%H:%M:%S")},
        description=f"{info.get('base')} distilled from {config.teacher} ({mode}), "
                    "served through transformers")
    if register:
        register_model(spec, persist=True)
    run.update(exports={**info.get("exports", {}), name: str(folder)})
    return spec
