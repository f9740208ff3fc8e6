"""Reward models: score how much people would prefer an answer to a prompt.

A reward model here is a transformers sequence-classification folder with one output (what
``appkit align reward`` trains and registers with ``role = "reward"``). The core uses it for
best-of-n answers (``chat.best_of``); training lives in the ``finetune`` layer, which builds its
inputs with the same :func:`reward_prompt` and :func:`encode_pair`, so scores at inference see
exactly what training saw.

torch and transformers are imported on first use, never at import time.

Example:
    >>> from appkit.models.reward import reward_prompt
    >>> print(reward_prompt("Who wrote it?", ["Ada wrote it."]))
    Sources:
    [1] Ada wrote it.
    <BLANKLINE>
    Question: Who wrote it?
"""

from __future__ import annotations

import json
import os
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from appkit.errors import ModelNotAvailableError
from appkit.lazy import require

#: Written into every trained reward folder; a folder with another version is refused.
PROMPT_FORMAT = 1


def reward_prompt(question: str, passages: Sequence[str] = ()) -> str:
    """The text a reward model reads before the answer: the numbered sources, then the question."""
    question = question.strip()
    if not passages:
        return f"Question: {question}"
    sources = "\n".join(f"[{i}] {p.strip()}" for i, p in enumerate(passages, 1))
    return f"Sources:\n{sources}\n\nQuestion: {question}"


def encode_pair(tokenizer: Any, prompt: str, answer: str, max_length: int) -> list[int]:
    """Token ids of ``prompt`` and ``answer`` as one input (a text pair; the longer is truncated)."""
    return list(tokenizer(prompt, answer, truncation="longest_first",
                          max_length=max_length)["input_ids"])


def check_tokenizer(model: Any, tokenizer: Any, where: str) -> None:
    """Refuse a tokenizer whose ids do not fit the model's embedding table.

    Raises:
        ModelNotAvailableError: naming ``where``, both sizes and what to do.
    """
    size = getattr(model.config, "vocab_size", None)
    n = len(tokenizer)
    if size is not None and n > size:
        raise ModelNotAvailableError(
            f"{where}: the tokenizer has {n} tokens but the model's embeddings have {size}, so "
            "they do not belong together; use the tokenizer saved with this model (or retrain "
            "the reward model from a base whose tokenizer matches)")


class RewardModel(ABC):
    """Scores answers; higher means preferred. Subclasses implement :meth:`score_pairs` only.

    Example:
        >>> from appkit.testing import FakeRewardModel
        >>> FakeRewardModel(lambda prompt, answer: len(answer)).score("Q", ["a", "abc"])
        [1.0, 3.0]
    """

    name: str = "reward"

    @abstractmethod
    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """One score per ``(prompt, answer)`` pair."""

    def score(self, prompt: str, answers: Sequence[str]) -> list[float]:
        """Scores of several answers to one prompt."""
        return self.score_pairs([(prompt, a) for a in answers])

    def prefers(self, prompt: str, chosen: str, rejected: str) -> bool:
        """True when ``chosen`` scores above ``rejected``."""
        a, b = self.score(prompt, [chosen, rejected])
        return a > b


class HFRewardModel(RewardModel):
    """A transformers sequence-classification folder with one logit, loaded on first use.

    Example:
        >>> from appkit.models.reward import HFRewardModel
        >>> rm = HFRewardModel("~/.cache/appkit/finetune/runs/notes-rm/final")  # doctest: +SKIP
        >>> rm.score("Question: Who?", ["Ada [1]", "Nobody knows"])  # doctest: +SKIP
        [2.1, -1.3]

    Args:
        path: the folder (model, tokenizer and ``reward.json``).
        name: how errors and reports name it.
        batch_size: pairs per forward pass.
        max_length: longest input in tokens (default: the one it was trained with, else 512).
        threads: torch threads (0: leave torch's setting).
    """

    def __init__(self, path: str | os.PathLike, *, name: str = "", batch_size: int = 16,
                 max_length: int = 0, threads: int = 0):
        self.path = Path(os.path.expanduser(path))
        self.name = name or str(self.path)
        self.batch_size = batch_size
        self.max_length = max_length
        self.threads = threads
        self._loaded: tuple[Any, Any] | None = None
        self._lock = threading.Lock()

    @property
    def info(self) -> dict[str, Any]:
        """``reward.json`` written by training (empty for a folder made elsewhere)."""
        try:
            return json.loads((self.path / "reward.json").read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}

    def warm_up(self) -> tuple[Any, Any]:
        """Load the model and tokenizer (once).

        Raises:
            ModelNotAvailableError: a missing folder, a model with more than one output, another
                prompt format, or a tokenizer that does not match the model.
        """
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()
            return self._loaded

    def _load(self) -> tuple[Any, Any]:
        if not (self.path / "config.json").exists():
            raise ModelNotAvailableError(
                f"reward model '{self.name}': {self.path} has no config.json; give a folder "
                "written by 'appkit align reward' or its catalogue name")
        info = self.info
        if info and info.get("prompt_format", PROMPT_FORMAT) != PROMPT_FORMAT:
            raise ModelNotAvailableError(
                f"reward model '{self.name}' was trained with prompt format "
                f"{info.get('prompt_format')}, this appkit reads {PROMPT_FORMAT}; retrain it")
        torch = require("torch", extra="tasks")
        transformers = require("transformers", extra="tasks")
        if self.threads:
            torch.set_num_threads(self.threads)
        tokenizer = transformers.AutoTokenizer.from_pretrained(self.path)
        model = transformers.AutoModelForSequenceClassification.from_pretrained(self.path)
        if model.config.num_labels != 1:
            raise ModelNotAvailableError(
                f"reward model '{self.name}' has {model.config.num_labels} outputs; a reward "
                "model has one (train it with 'appkit align reward')")
        check_tokenizer(model, tokenizer, f"reward model '{self.name}' ({self.path})")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        model.config.pad_token_id = tokenizer.pad_token_id
        model.eval()
        self.max_length = self.max_length or int(info.get("max_length", 512))
        return model, tokenizer

    def score_pairs(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        model, tokenizer = self.warm_up()
        torch = require("torch", extra="tasks")
        out: list[float] = []
        for i in range(0, len(pairs), self.batch_size):
            batch = pairs[i:i + self.batch_size]
            ids = [encode_pair(tokenizer, p, a, self.max_length) for p, a in batch]
            enc = tokenizer.pad({"input_ids": ids}, return_tensors="pt")
            with torch.inference_mode():
                logits = model(**enc).logits
            out += [float(x) for x in logits[:, 0]]
        return out


def load_reward_model(name_or_path: str, **kwargs: Any) -> HFRewardModel:
    """A reward model by catalogue name (``role = "reward"``) or folder; nothing is loaded yet.

    Raises:
        ModelNotAvailableError: an unknown name, or a catalogue entry that is not a reward model.
    """
    from appkit.models.catalogue import get_spec

    folder = Path(os.path.expanduser(name_or_path))
    if folder.is_dir():
        return HFRewardModel(folder, **kwargs)
    spec = get_spec(name_or_path)
    if spec.role != "reward":
        raise ModelNotAvailableError(
            f"'{spec.name}' is a {spec.role} model, not a reward model; train one with "
            "'appkit align reward --pairs FILE' and name it in chat.reward_model")
    return HFRewardModel(spec.local_path, name=spec.name, **kwargs)
