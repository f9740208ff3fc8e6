"""Encoder-decoder models (T5, BART and their kin) from a local transformers folder, for summarize
and translate. No seq2seq weights ship with appkit (nothing is downloaded at run time): point
``--model`` at a folder you have, e.g. one saved with ``save_pretrained``.

The model gets the raw input with the task's T5-style prefix (``summarize: ``,
``translate English to French: ``), not a chat prompt.

Example:
    >>> from appkit.tasks.seq2seq import Seq2SeqModel
    >>> m = Seq2SeqModel("/models/t5-small")  # nothing loaded yet
    >>> m.prefix("translate", source="English", target="German")
    'translate English to German: '
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from appkit.lazy import require
from appkit.tasks.errors import TaskInputError

PREFIXES = {"summarize": "summarize: ", "translate": "translate {source} to {target}: "}


def is_seq2seq_folder(path: str | Path) -> bool:
    """True for a transformers folder whose config says encoder-decoder."""
    config = Path(path) / "config.json"
    try:
        return bool(json.loads(config.read_text(encoding="utf-8")).get("is_encoder_decoder"))
    except (OSError, json.JSONDecodeError):
        return False


class Seq2SeqModel:
    """A transformers ``AutoModelForSeq2SeqLM`` with its tokenizer, loaded on first use.

    Example:
        >>> m = Seq2SeqModel("/models/t5-small", max_new_tokens=32)
        >>> m.generate("summarize: a long text")  # doctest: +SKIP
        'a text'

    Args:
        path: the local folder.
        max_new_tokens: tokens generated per call at most.
        num_beams: beam search width (1: greedy).
    """

    role = "seq2seq"

    def __init__(self, path: str | Path, *, max_new_tokens: int = 128, num_beams: int = 1):
        self.path = Path(path)
        self.max_new_tokens = max_new_tokens
        self.num_beams = num_beams
        self._model: Any = None
        self._tokenizer: Any = None

    def warm_up(self) -> Any:
        if self._model is None:
            if not is_seq2seq_folder(self.path):
                raise TaskInputError(f"{self.path} is not a transformers encoder-decoder folder "
                                     "(config.json with is_encoder_decoder)")
            transformers = require("transformers", extra="tasks")
            self._tokenizer = transformers.AutoTokenizer.from_pretrained(str(self.path))
            self._model = transformers.AutoModelForSeq2SeqLM.from_pretrained(str(self.path))
            self._model.eval()
        return self._model

    @property
    def n_ctx(self) -> int:
        """Input tokens the encoder takes (the tokenizer's limit, at most 4096)."""
        self.warm_up()
        limit = getattr(self._tokenizer, "model_max_length", 512) or 512
        return int(min(limit, 4096))

    def prefix(self, task: str, **fields: str) -> str:
        return PREFIXES.get(task, "").format(**fields)

    def get_num_tokens(self, text: str) -> int:
        self.warm_up()
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def generate(self, text: str) -> str:
        torch = require("torch", extra="tasks")
        model = self.warm_up()
        batch = self._tokenizer([text], return_tensors="pt", truncation=True,
                                max_length=self.n_ctx)
        batch.pop("token_type_ids", None)  # BERT-style tokenizers add them; T5/BART take none
        with torch.inference_mode():
            out = model.generate(**batch, max_new_tokens=self.max_new_tokens,
                                 num_beams=self.num_beams, do_sample=False)
        return self._tokenizer.decode(out[0], skip_special_tokens=True)
