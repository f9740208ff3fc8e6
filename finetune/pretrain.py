"""Pretraining from scratch, small: a byte-level BPE tokenizer and a tiny decoder trained on the
user's own documents, next to continued pretraining of an existing model (LoRA on raw text) on the
same text and budget, both with a held-out perplexity curve.

The result is the evidence for the rule "start from an existing model": a few million parameters
trained for minutes on a laptop learn the spelling and the common words of the documents, while the
existing model already knows the language and only has to adapt to them.

The held-out text is the same characters for every model: the last ``heldout`` share of the text
(cut at a line break or space) is set aside *before* the tokenizer is trained, so the tokenizer
never sees it. Each model then cuts both parts into blocks with its own tokenizer. Perplexity is
per token of that model's tokenizer, so across tokenizers compare ``bits_per_char`` (the total
held-out negative log-likelihood in bits divided by the number of held-out characters).

Example:
    >>> from finetune.pretrain import PretrainConfig
    >>> PretrainConfig(steps=100, hidden=128).hidden
    128

    Then, on a folder of .txt/.md files::

        result = pretrain("notes/", "tiny-model/", PretrainConfig(steps=300))
        result.curve[-1]["heldout_ppl"]            # also in tiny-model/curve.json
        base = base_perplexity(smollm2_dir(), "notes/")
        lora = continue_pretraining(smollm2_dir(), "notes/", "smollm2-notes/")
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from appkit.errors import AppkitError
from appkit.lazy import require

TEXT_SUFFIXES = (".txt", ".md")
END_OF_TEXT = "<|endoftext|>"
CURVE_FILE = "curve.json"
SUMMARY_FILE = "pretrain.json"


class PretrainError(AppkitError):
    """The text or the settings cannot make a pretraining run; the message says what to change."""


@dataclass(frozen=True)
class PretrainConfig:
    """Settings of a small pretraining or continued-pretraining run.

    Example:
        >>> PretrainConfig(layers=2, steps=50).to_dict()["layers"]
        2

    Attributes:
        vocab_size: BPE vocabulary of the new tokenizer (from scratch only).
        layers: decoder layers of the tiny model.
        hidden: hidden size of the tiny model (its MLP is 4 x hidden).
        heads: attention heads (must divide ``hidden``).
        block_size: tokens per training block (and the model's context length).
        steps: optimizer steps; 0 with ``minutes`` set trains until the time is up.
        minutes: stop after this much training time (0: no limit).
        eval_every: held-out perplexity every this many steps (and at the start and the end).
        batch_size: blocks per step.
        lr: peak learning rate (None: 2e-3 from scratch, 2e-4 with LoRA).
        heldout: share of the text (by characters, at the end) kept for perplexity.
        seed: seeds the weights and the order of the blocks.
        lora_r: LoRA rank for continued pretraining (alpha is 2 x r).
        threads: torch CPU threads (0: leave torch's default).
    """

    vocab_size: int = 4000
    layers: int = 4
    hidden: int = 192
    heads: int = 4
    block_size: int = 128
    steps: int = 200
    minutes: float = 0.0
    eval_every: int = 50
    batch_size: int = 8
    lr: float | None = None
    heldout: float = 0.1
    seed: int = 0
    lora_r: int = 8
    threads: int = 0

    def __post_init__(self) -> None:
        for name in ("vocab_size", "layers", "hidden", "heads", "block_size", "eval_every",
                     "batch_size", "lora_r"):
            if getattr(self, name) <= 0:
                raise PretrainError(f"{name.replace('_', '-')} must be a positive number, "
                                    f"got {getattr(self, name)}")
        if self.steps < 0 or self.minutes < 0:
            raise PretrainError(f"steps and minutes cannot be negative (got steps {self.steps}, "
                                f"minutes {self.minutes})")
        if self.steps == 0 and self.minutes == 0:
            raise PretrainError("give a number of steps (--steps N) or a time budget (--minutes M)")
        if self.block_size < 2:
            raise PretrainError(f"block-size must be at least 2 tokens, got {self.block_size}")
        if self.hidden % self.heads:
            raise PretrainError(f"hidden ({self.hidden}) must be a multiple of heads "
                                f"({self.heads})")
        if not 0 < self.heldout < 1:
            raise PretrainError(f"heldout must be a share between 0 and 1, got {self.heldout}")
        if self.lr is not None and self.lr <= 0:
            raise PretrainError(f"lr must be positive, got {self.lr}")
        if self.vocab_size < 260:
            # byte-level BPE starts from the 256 byte symbols plus the end-of-text token
            raise PretrainError(f"vocab-size must be at least 260 (256 bytes + merges), "
                                f"got {self.vocab_size}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Corpus:
    """The user's text, split by characters into a training part and a held-out tail."""

    source: str
    files: list[Path]
    train_text: str
    heldout_text: str

    @property
    def chars(self) -> int:
        return len(self.train_text) + len(self.heldout_text)


@dataclass
class Perplexity:
    """Held-out scores of one model.

    Attributes:
        ppl: perplexity per token of the model's own tokenizer.
        bits_per_char: total negative log-likelihood in bits / held-out characters (comparable
            across tokenizers).
        nll: total negative log-likelihood in nats.
        tokens: tokens scored.
        chars: held-out characters.
    """

    ppl: float
    bits_per_char: float
    nll: float
    tokens: int
    chars: int


@dataclass
class PretrainResult:
    """What a run did: its curve (also in ``curve.json``) and where the model is."""

    mode: str
    out: Path
    curve: list[dict[str, Any]]
    params: int
    trainable: int
    steps: int
    seconds: float
    train_tokens: int
    heldout: Perplexity
    initial: Perplexity
    config: dict[str, Any] = field(default_factory=dict)
    base: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "out": str(self.out), "base": self.base, "params": self.params,
                "trainable": self.trainable, "steps": self.steps,
                "seconds": round(self.seconds, 2), "train_tokens": self.train_tokens,
                "heldout": asdict(self.heldout), "initial": asdict(self.initial),
                "config": self.config, "curve": self.curve}


# --- text ---------------------------------------------------------------------------------------


def _text_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        return sorted(p for p in path.rglob("*")
                      if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    raise PretrainError(f"{path} does not exist: give a .txt/.md file or a folder of them")


def read_corpus(path: str | os.PathLike, heldout: float = 0.1) -> Corpus:
    """Read a file, or every .txt/.md file under a folder (sorted), and split off the held-out tail.

    The split is deterministic: the last ``heldout`` share of the characters, moved forward to the
    next line break (else space) so no word is cut.

    Raises:
        PretrainError: the path is missing, or holds no readable text.
    """
    path = Path(os.path.expanduser(str(path)))
    files = _text_files(path)
    texts: list[str] = []
    unreadable: list[str] = []
    for f in files:
        try:
            text = f.read_text(encoding="utf-8").strip()
        except (UnicodeDecodeError, OSError) as exc:
            unreadable.append(f"{f.name} ({exc.__class__.__name__})")
            continue
        if text:
            texts.append(text)
    if not texts:
        why = f"; unreadable: {', '.join(unreadable[:5])}" if unreadable else ""
        raise PretrainError(f"{path}: no readable text in {len(files)} .txt/.md file(s){why}; "
                            "give UTF-8 text files")
    text = "\n\n".join(texts)
    cut = int(len(text) * (1 - heldout))
    for sep in ("\n", " "):
        at = text.find(sep, cut)
        if 0 < at < len(text) - 1:
            cut = at + 1
            break
    return Corpus(str(path), files, text[:cut], text[cut:])


# --- tokenizer ----------------------------------------------------------------------------------


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4000) -> Any:
    """Train a byte-level BPE tokenizer (``tokenizers``) and wrap it for transformers.

    Byte-level means every string round-trips exactly: ``decode(encode(x)) == x``.

    Args:
        texts: the training text (any number of pieces).
        vocab_size: the vocabulary, including the 256 bytes and ``<|endoftext|>``.

    Returns:
        A ``PreTrainedTokenizerFast``; ``save_pretrained`` writes ``tokenizer.json``.
    """
    tk = require("tokenizers", extra="finetune")
    transformers = require("transformers", extra="finetune")
    tokenizer = tk.Tokenizer(tk.models.BPE())
    tokenizer.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[END_OF_TEXT],
                                     initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
                                     show_progress=False)
    tokenizer.train_from_iterator((piece for t in texts for piece in t.split("\n\n")),
                                  trainer=trainer)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT,
        pad_token=END_OF_TEXT, unk_token=None, clean_up_tokenization_spaces=False)


def encode(tokenizer: Any, text: str) -> list[int]:
    """Token ids of ``text`` without special tokens (the Rust tokenizer when there is one: fast,
    and no warning about texts longer than the model's context)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        return backend.encode(text, add_special_tokens=False).ids
    return list(tokenizer(text, add_special_tokens=False).input_ids)


# --- blocks -------------------------------------------------------------------------------------


def _blocks(corpus: Corpus, tokenizer: Any, block_size: int) -> tuple[Any, list[Any], int]:
    """Training blocks (full blocks only) and held-out windows, with the error for too little text.

    Held-out windows overlap by one token, so every held-out token but the first is predicted once.
    """
    torch = require("torch", extra="finetune")
    train_ids = encode(tokenizer, corpus.train_text)
    held_ids = encode(tokenizer, corpus.heldout_text)
    n_train = len(train_ids) // block_size
    if n_train < 1 or len(held_ids) < block_size:
        raise PretrainError(
            f"{corpus.source}: too little text to pretrain on: {corpus.chars:,} characters gave "
            f"{len(train_ids):,} training and {len(held_ids):,} held-out tokens (the last "
            f"{len(corpus.heldout_text):,} characters); at least {block_size:,} of each are "
            f"needed (one block of --block-size {block_size}), about "
            f"{_chars_needed(corpus, train_ids, held_ids, block_size):,} characters: "
            "give more text or a smaller --block-size")
    train = torch.tensor(train_ids[:n_train * block_size]).view(n_train, block_size)
    stride = block_size - 1
    held = [torch.tensor(held_ids[i:i + block_size])
            for i in range(0, len(held_ids) - 1, stride) if len(held_ids[i:i + block_size]) > 1]
    return train, held, len(train_ids)


def _chars_needed(corpus: Corpus, train_ids: list[int], held_ids: list[int],
                  block_size: int) -> int:
    per_token = corpus.chars / max(1, len(train_ids) + len(held_ids))
    share = len(corpus.heldout_text) / max(1, corpus.chars)
    # the held-out tail is the smaller side: it needs one block of tokens
    return math.ceil(block_size * per_token / max(share, 1e-9))


# --- models -------------------------------------------------------------------------------------


def tiny_config(config: PretrainConfig, vocab_size: int) -> Any:
    """The transformers ``LlamaConfig`` of the tiny decoder."""
    transformers = require("transformers", extra="finetune")
    return transformers.LlamaConfig(
        vocab_size=vocab_size, hidden_size=config.hidden, intermediate_size=4 * config.hidden,
        num_hidden_layers=config.layers, num_attention_heads=config.heads,
        num_key_value_heads=config.heads, max_position_embeddings=config.block_size,
        tie_word_embeddings=True, bos_token_id=0, eos_token_id=0, pad_token_id=0)


def _load_causal_lm(model_dir: str | os.PathLike) -> tuple[Any, Any]:
    transformers = require("transformers", extra="finetune")
    path = Path(os.path.expanduser(str(model_dir)))
    if not (path / "config.json").exists():
        raise PretrainError(f"{path} is not a transformers model folder (no config.json); give "
                            "a folder or a catalogue name such as smollm2-135m")
    model = transformers.AutoModelForCausalLM.from_pretrained(os.fspath(path), dtype="float32")
    tokenizer = transformers.AutoTokenizer.from_pretrained(os.fspath(path))
    return model, tokenizer


def smollm2_dir(name: str = "smollm2-135m", *, log: Callable[[str], None] = print) -> Path:
    """The float32 transformers folder of a catalogue GGUF model (converted once), e.g. SmolLM2."""
    return model_folder(name, log=log)


def model_folder(name_or_path: str, *, log: Callable[[str], None] = print) -> Path:
    """A transformers folder as given, or the converted folder of a catalogue name."""
    from finetune.base import model_folder as resolve

    return resolve(name_or_path, log=log)[0]


SCORE_BATCH = 8  # held-out windows per forward pass


# --- evaluation and training --------------------------------------------------------------------


def _score(model: Any, held: list[Any], chars: int) -> Perplexity:
    torch = require("torch", extra="finetune")
    was_training = model.training
    model.eval()
    nll, count = 0.0, 0
    # Windows of one length go through the model SCORE_BATCH at a time (only the last window can
    # be shorter): one forward pass per window made evaluation the slow part of a SmolLM2 run.
    size = held[0].numel()
    full = [w for w in held if w.numel() == size]
    batches = [torch.stack(full[i:i + SCORE_BATCH]) for i in range(0, len(full), SCORE_BATCH)]
    batches += [w.unsqueeze(0) for w in held if w.numel() != size]
    with torch.no_grad():
        for ids in batches:
            logits = model(input_ids=ids).logits[:, :-1].float()
            targets = ids[:, 1:]
            nll += torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), reduction="sum").item()
            count += targets.numel()
    model.train(was_training)
    return Perplexity(ppl=math.exp(nll / count), bits_per_char=nll / math.log(2) / chars,
                      nll=nll, tokens=count, chars=chars)


@dataclass
class _Trained:
    curve: list[dict[str, Any]]
    seconds: float
    steps: int
    initial: Perplexity
    final: Perplexity


def _train(model: Any, train: Any, held: list[Any], corpus: Corpus, config: PretrainConfig,
           lr: float, log: Callable[[str], None]) -> _Trained:
    torch = require("torch", extra="finetune")
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    total = config.steps or None
    warmup = max(1, (total or 200) // 10)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if total is None:  # time budget only: constant after warm-up
            return 1.0
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    gen = torch.Generator().manual_seed(config.seed)
    chars = len(corpus.heldout_text)

    scores: list[Perplexity] = []

    def point(step: int, loss: float | None, seconds: float) -> dict[str, Any]:
        scored = _score(model, held, chars)
        scores.append(scored)
        row = {"step": step, "train_loss": None if loss is None else round(loss, 4),
               "heldout_ppl": round(scored.ppl, 3), "heldout_bpc": round(scored.bits_per_char, 4),
               "seconds": round(seconds, 2)}
        log(f"step {step}: train loss {row['train_loss']}, held-out perplexity "
            f"{row['heldout_ppl']}, {row['heldout_bpc']} bits/char, {seconds:.0f}s")
        return row

    curve = [point(0, None, 0.0)]
    model.train()
    seconds, step, recent = 0.0, 0, []
    budget = config.minutes * 60
    while (total is None or step < total) and (not budget or seconds < budget):
        start = time.perf_counter()
        idx = torch.randint(0, train.shape[0], (config.batch_size,), generator=gen)
        batch = train[idx]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        seconds += time.perf_counter() - start  # training time only: evaluation is not counted
        step += 1
        recent.append(loss.item())
        if step % config.eval_every == 0:
            curve.append(point(step, sum(recent) / len(recent), seconds))
            recent = []
    if curve[-1]["step"] != step:
        curve.append(point(step, sum(recent) / len(recent) if recent else None, seconds))
    model.eval()
    return _Trained(curve, seconds, step, scores[0], scores[-1])


def _set_threads(config: PretrainConfig) -> None:
    if config.threads:
        require("torch", extra="finetune").set_num_threads(config.threads)


def _write(out: Path, result: PretrainResult) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / CURVE_FILE).write_text(json.dumps(result.curve, indent=2))
    summary = {k: v for k, v in result.to_dict().items() if k != "curve"}
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, default=str))


def _count(model: Any) -> tuple[int, int]:
    params = list(model.parameters())
    return (sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad))


def pretrain(data: str | os.PathLike, out: str | os.PathLike,
             config: PretrainConfig | None = None, *,
             log: Callable[[str], None] = print) -> PretrainResult:
    """Train a tokenizer and a tiny decoder from scratch on the text at ``data``; save both in
    ``out`` (loadable with ``AutoModelForCausalLM`` / ``AutoTokenizer``) with ``curve.json``.

    Args:
        data: a .txt/.md file or a folder of them.
        out: the output folder.
        config: sizes, steps and budget (defaults: about 3M parameters, 200 steps).
        log: where progress lines go.

    Raises:
        PretrainError: no readable text, too little text for a training and a held-out block, or
            bad settings.
    """
    config = config or PretrainConfig()
    torch = require("torch", extra="finetune")
    transformers = require("transformers", extra="finetune")
    _set_threads(config)
    corpus = read_corpus(data, config.heldout)
    tokenizer = train_tokenizer([corpus.train_text], config.vocab_size)
    tokenizer.model_max_length = config.block_size
    train, held, train_tokens = _blocks(corpus, tokenizer, config.block_size)
    torch.manual_seed(config.seed)
    model = transformers.LlamaForCausalLM(tiny_config(config, len(tokenizer)))
    params, trainable = _count(model)
    log(f"from scratch: {params / 1e6:.2f}M parameters, vocabulary {len(tokenizer)}, "
        f"{train.shape[0]} training blocks of {config.block_size} tokens, {len(held)} held-out")
    done = _train(model, train, held, corpus, config, config.lr or 2e-3, log)
    out = Path(out)
    model.save_pretrained(os.fspath(out), safe_serialization=True)
    tokenizer.save_pretrained(os.fspath(out))
    result = PretrainResult("scratch", out, done.curve, params, trainable, done.steps,
                            done.seconds, train_tokens, done.final, done.initial, config.to_dict())
    _write(out, result)
    return result


def base_perplexity(model_dir: str | os.PathLike, data: str | os.PathLike,
                    config: PretrainConfig | None = None) -> Perplexity:
    """Held-out perplexity (and bits per character) of an existing model, without training: the
    step 0 of :func:`continue_pretraining` on the same text and held-out split.

    Raises:
        PretrainError: not a model folder, or too little text.
    """
    config = config or PretrainConfig()
    _set_threads(config)
    corpus = read_corpus(data, config.heldout)
    model, tokenizer = _load_causal_lm(model_dir)
    _, held, _ = _blocks(corpus, tokenizer, config.block_size)
    return _score(model, held, len(corpus.heldout_text))


def continue_pretraining(model_dir: str | os.PathLike, data: str | os.PathLike,
                         out: str | os.PathLike, config: PretrainConfig | None = None, *,
                         log: Callable[[str], None] = print) -> PretrainResult:
    """Continue pretraining an existing transformers model on raw text with a LoRA adapter (causal
    LM loss), with the same blocks, budget and held-out measurement as :func:`pretrain`.

    The adapter (peft format), the tokenizer and ``curve.json`` go into ``out``; load with
    ``peft.PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(model_dir), out)``.

    Args:
        model_dir: a transformers model folder (:func:`model_folder` turns a catalogue name such
            as ``smollm2-135m`` into one).
        data: a .txt/.md file or a folder of them.
        out: the output folder.
        config: block size, steps, budget, ``lora_r``, ``lr`` (default 2e-4).
        log: where progress lines go.
    """
    from finetune.peft_methods import DEFAULT_LR, wrap

    config = config or PretrainConfig()
    torch = require("torch", extra="finetune")
    _set_threads(config)
    corpus = read_corpus(data, config.heldout)
    model, tokenizer = _load_causal_lm(model_dir)
    train, held, train_tokens = _blocks(corpus, tokenizer, config.block_size)
    torch.manual_seed(config.seed)
    model = wrap(model, "lora", r=config.lora_r, alpha=2 * config.lora_r, dropout=0.0)
    params, trainable = _count(model)
    log(f"continued pretraining of {Path(model_dir).name} with LoRA r={config.lora_r}: "
        f"{trainable / 1e6:.2f}M of {params / 1e6:.1f}M parameters trained, "
        f"{train.shape[0]} training blocks of {config.block_size} tokens, {len(held)} held-out")
    lr = config.lr or DEFAULT_LR["lora"]
    done = _train(model, train, held, corpus, config, lr, log)
    out = Path(out)
    model.save_pretrained(os.fspath(out))
    tokenizer.save_pretrained(os.fspath(out))
    result = PretrainResult("lora", out, done.curve, params, trainable, done.steps, done.seconds,
                            train_tokens, done.final, done.initial, config.to_dict(),
                            base=str(model_dir))
    _write(out, result)
    return result
