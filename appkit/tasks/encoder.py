"""Encoder-only tasks: the packaged MiniLM (a BERT encoder) with a head, fine-tuned with
transformers on the CPU. One forward pass per text, no generation: many times faster per example
than prompting a decoder.

:class:`EncoderHead` holds what every head shares (loading, the training loop, saving);
:class:`EncoderClassifier` is the sequence-classification head for ``classify``, and
:class:`appkit.tasks.encoder_tokens.EncoderTokenClassifier` the token-classification head for
``extract``. A trained head is a folder (``save_pretrained`` plus a marker file naming the head's
labels); ``appkit run TASK --model FOLDER`` and ``appkit models compare --models FOLDER`` use it.

Example:
    >>> from appkit.tasks.encoder import EncoderClassifier
    >>> clf = EncoderClassifier("all-minilm-l6-v2", labels=("billing", "bug"))  # nothing loaded
    >>> clf.labels
    ('billing', 'bug')
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from appkit.lazy import require
from appkit.tasks.errors import TaskInputError

MARKER = "appkit_classifier.json"


def is_classifier_folder(path: str | Path) -> bool:
    return (Path(path) / MARKER).is_file()


class EncoderHead:
    """A BERT-family encoder with a task head: loading, fine-tuning and saving.

    Subclasses set :attr:`role`, :attr:`marker` and :attr:`auto_class`, name the head's outputs
    in :meth:`head_labels`, and build training batches for :meth:`train`.

    Example:
        >>> from appkit.tasks.encoder import EncoderClassifier, EncoderHead
        >>> issubclass(EncoderClassifier, EncoderHead)
        True

    Args:
        model: a catalogue name (``all-minilm-l6-v2``) or a local transformers folder.
        labels: the classes, in order (read from the folder of a trained head).
        max_length: tokens per text (or per window of a long text) at most.
    """

    role = ""
    marker = MARKER
    auto_class = ""
    what = "an encoder head"
    labels_hint = "tasks.labels"

    def __init__(self, model: str | Path, labels: Sequence[str] = (), *, max_length: int = 128):
        self.model_ref = str(model)
        meta = Path(model) / self.marker
        if meta.is_file():
            labels = tuple(json.loads(meta.read_text(encoding="utf-8"))["labels"])
        if not labels:
            raise TaskInputError(f"{self.what} needs labels ({self.labels_hint})")
        self.labels = tuple(labels)
        self.max_length = max_length
        self._model: Any = None
        self._tokenizer: Any = None

    def head_labels(self) -> tuple[str, ...]:
        """The head's output classes, in order."""
        return self.labels

    @property
    def path(self) -> Path:
        p = Path(self.model_ref)
        if p.exists():
            return p
        from appkit.models.catalogue import resolve_model

        return resolve_model(self.model_ref)[1]

    def warm_up(self) -> Any:
        """Load the tokenizer and the model (a new head is initialised for a plain encoder)."""
        if self._model is None:
            transformers = require("transformers", extra="tasks")
            path = str(self.path)
            names = self.head_labels()
            self._tokenizer = transformers.AutoTokenizer.from_pretrained(path)
            self._model = getattr(transformers, self.auto_class).from_pretrained(
                path, num_labels=len(names), id2label=dict(enumerate(names)),
                label2id={lb: i for i, lb in enumerate(names)})
            self._model.eval()
        return self._model

    def train(self, n: int, batch: Callable[[list[int]], dict[str, Any]], *, epochs: int,
              batch_size: int, lr: float, seed: int) -> dict[str, float]:
        """Fine-tune encoder and head: ``batch(indices)`` gives the model's inputs and ``labels``
        for those training examples. Returns the last loss and the seconds taken."""
        torch = require("torch", extra="tasks")
        model = self.warm_up()
        torch.manual_seed(seed)
        rng = random.Random(seed)
        order = list(range(n))
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
        model.train()
        start, loss = time.perf_counter(), float("nan")
        for _ in range(epochs):
            rng.shuffle(order)
            for i in range(0, len(order), batch_size):
                out = model(**batch(order[i:i + batch_size]))
                out.loss.backward()
                optimizer.step()
                optimizer.zero_grad()
                loss = float(out.loss.detach())
        model.eval()
        return {"loss": loss, "seconds": time.perf_counter() - start}

    def save(self, folder: str | Path) -> Path:
        """Write the tuned model, its tokenizer and the label list to ``folder``."""
        p = Path(folder)
        self.warm_up().save_pretrained(p)
        self._tokenizer.save_pretrained(p)
        (p / self.marker).write_text(json.dumps({"labels": list(self.labels),
                                                 "base": self.model_ref}), encoding="utf-8")
        return p


class EncoderClassifier(EncoderHead):
    """A sequence classifier over a BERT-family encoder (``classify``).

    Example:
        >>> clf = EncoderClassifier("all-minilm-l6-v2", labels=("a", "b"))
        >>> clf.fit(["x", "y"], ["a", "b"], epochs=1)  # doctest: +SKIP
        >>> clf.predict(["x"])  # doctest: +SKIP
        ['a']

    Args:
        model: a catalogue name (``all-minilm-l6-v2``) or a local transformers folder.
        labels: the classes, in order (read from the folder of a trained classifier).
        max_length: tokens per text at most.
    """

    role = "classifier"
    auto_class = "AutoModelForSequenceClassification"
    what = "an encoder classifier"

    def _batch(self, texts: Sequence[str]) -> Any:
        return self._tokenizer(list(texts), padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt")

    def fit(self, texts: Sequence[str], labels: Sequence[str], *, epochs: int = 8,
            batch_size: int = 16, lr: float = 5e-5, seed: int = 0) -> dict[str, float]:
        """Fine-tune encoder and head on labelled texts; returns the last loss and seconds.

        Raises:
            TaskInputError: for a label that is not one of :attr:`labels`, or no data.
        """
        torch = require("torch", extra="tasks")
        unknown = sorted(set(labels) - set(self.labels))
        if unknown:
            raise TaskInputError(f"training labels {unknown} are not among {list(self.labels)}")
        if not texts:
            raise TaskInputError("no training examples")
        self.warm_up()
        ids = [self.labels.index(lb) for lb in labels]

        def batch(idx: list[int]) -> dict[str, Any]:
            return {**self._batch([texts[j] for j in idx]),
                    "labels": torch.tensor([ids[j] for j in idx])}

        return self.train(len(texts), batch, epochs=epochs, batch_size=batch_size, lr=lr,
                          seed=seed)

    def predict(self, texts: Sequence[str], *, batch_size: int = 32) -> list[str]:
        """The most likely label of each text."""
        torch = require("torch", extra="tasks")
        model = self.warm_up()
        out: list[str] = []
        with torch.inference_mode():
            for i in range(0, len(texts), batch_size):
                logits = model(**self._batch(texts[i:i + batch_size])).logits
                out += [self.labels[j] for j in logits.argmax(-1).tolist()]
        return out
