"""Encoder-only extract: the packaged MiniLM (a BERT encoder) with a token-classification head,
fine-tuned with transformers on the CPU to tag named entities (BIO tags, one per word).

Training data is the extract eval-set format, one JSON object per line::

    {"input": "Marie Curie joined the University of Paris in 1906.",
     "reference": {"entities": [{"text": "Marie Curie", "type": "PERSON"},
                                {"text": "1906", "type": "DATE", "start": 46, "end": 50}]}}

An entity names its span by ``text`` (every occurrence in the input is tagged) or by the character
offsets ``start``/``end``; ``label`` is accepted for ``type``, and ``{"text", "entities"}`` rows
for ``{"input", "reference"}``. Character spans become BIO labels through the fast tokenizer's
``offset_mapping``: the first sub-token of each word carries the word's tag. Long texts are read
in overlapping windows of ``max_length`` tokens.

The result has the LLM extract path's schema, ``{"entities": [{"text", "type"}]}``, so both are
scored by the same entity-level precision, recall and F1.

Example:
    >>> from appkit.tasks.encoder_tokens import EncoderTokenClassifier, entity_spans
    >>> entity_spans("Ada met Alan.", [{"text": "Alan", "type": "PERSON"}])
    [(8, 12, 'PERSON')]
    >>> EncoderTokenClassifier("all-minilm-l6-v2", labels=("PERSON",)).head_labels()
    ('O', 'B-PERSON', 'I-PERSON')
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from appkit.jsonl import read_jsonl
from appkit.lazy import require
from appkit.tasks.encoder import EncoderHead
from appkit.tasks.errors import TaskInputError

TOKEN_MARKER = "appkit_token_classifier.json"
Span = tuple[int, int, str]


def is_token_classifier_folder(path: str | Path) -> bool:
    return (Path(path) / TOKEN_MARKER).is_file()


def entity_spans(text: str, entities: Sequence[Mapping[str, Any]], *, where: str = "") -> list[Span]:
    """Character spans ``(start, end, TYPE)`` of labelled entities in ``text``, sorted.

    Overlapping spans keep the first one given.

    Raises:
        TaskInputError: an entity without a type, with bad offsets, or whose text does not occur;
            the message starts with ``where`` (e.g. ``"train.jsonl, line 3: "``).
    """
    spans: list[Span] = []
    for i, e in enumerate(entities):
        if not isinstance(e, Mapping):
            raise TaskInputError(f"{where}entity {i} is not an object")
        etype = str(e.get("type") or e.get("label") or "").strip().upper()
        if not etype:
            raise TaskInputError(f"{where}entity {i} has no 'type'")
        if e.get("start") is not None and e.get("end") is not None:
            start, end = int(e["start"]), int(e["end"])
            if not 0 <= start < end <= len(text):
                raise TaskInputError(f"{where}entity {i}: start/end {start}..{end} are outside "
                                     f"the text ({len(text)} characters)")
            found = [(start, end)]
        else:
            value = str(e.get("text") or "")
            if not value.strip():
                raise TaskInputError(f"{where}entity {i} has neither 'text' nor 'start'/'end'")
            found = [(m.start(), m.end()) for m in re.finditer(re.escape(value), text)] or [
                (m.start(), m.end()) for m in re.finditer(re.escape(value), text, re.I)]
            if not found:
                raise TaskInputError(f"{where}entity {value!r} does not occur in the text")
        for start, end in found:
            if not any(start < b and a < end for a, b, _ in spans):
                spans.append((start, end, etype))
    return sorted(spans)


def load_entity_examples(path: str | Path) -> list[tuple[str, list[Span]]]:
    """Read labelled texts (the format above) as ``(text, spans)`` pairs.

    Raises:
        TaskInputError: naming the file and line of a malformed row or entity.
    """
    p = Path(path)
    out = []
    for no, row in read_jsonl(p, "the entity training file", TaskInputError):
        where = f"{p}, line {no}: "
        text = row.get("input", row.get("text"))
        ref = row.get("reference", row)
        entities = ref.get("entities") if isinstance(ref, Mapping) else None
        if not isinstance(text, str) or not text.strip() or not isinstance(entities, list):
            raise TaskInputError(f"{where}expected {{\"input\": text, \"reference\": "
                                 "{\"entities\": [{\"text\", \"type\"}, ...]}}")
        out.append((text, entity_spans(text, entities, where=where)))
    if not out:
        raise TaskInputError(f"the entity training file {p} has no rows")
    return out


class EncoderTokenClassifier(EncoderHead):
    """A named-entity tagger over a BERT-family encoder (``extract`` without a JSON schema).

    Example:
        >>> from appkit.tasks.encoder_tokens import EncoderTokenClassifier
        >>> ner = EncoderTokenClassifier("all-minilm-l6-v2", labels=("PERSON", "LOCATION"))
        >>> ner.fit(["Ada lives in Rome."], [[{"text": "Ada", "type": "PERSON"},
        ...                                   {"text": "Rome", "type": "LOCATION"}]])  # doctest: +SKIP
        >>> ner.predict(["Ada lives in Rome."])  # doctest: +SKIP
        [{'entities': [{'text': 'Ada', 'type': 'PERSON'}, {'text': 'Rome', 'type': 'LOCATION'}]}]

    Args:
        model: a catalogue name (``all-minilm-l6-v2``) or a local transformers folder.
        labels: the entity types, in order (read from the folder of a trained tagger).
        max_length: tokens per window of text at most (windows overlap by a quarter).
    """

    role = "token-classifier"
    marker = TOKEN_MARKER
    auto_class = "AutoModelForTokenClassification"
    what = "an encoder token classifier"
    labels_hint = "the entity types, e.g. PERSON, LOCATION"

    def head_labels(self) -> tuple[str, ...]:
        return ("O", *(f"{p}-{t}" for t in self.labels for p in "BI"))

    def _encode(self, texts: Sequence[str]) -> Any:
        return self._tokenizer(list(texts), truncation=True, max_length=self.max_length,
                               stride=self.max_length // 4, return_overflowing_tokens=True,
                               return_offsets_mapping=True, padding=True, return_tensors="pt")

    @staticmethod
    def _words(enc: Any, window: int) -> list[tuple[int, int, int]]:
        """``(first token index, start, end)`` of each word of one window, in order."""
        words: dict[int, list[int]] = {}
        offsets = enc["offset_mapping"][window].tolist()
        for t, w in enumerate(enc.word_ids(window)):
            if w is None:
                continue
            if w not in words:
                words[w] = [t, offsets[t][0], offsets[t][1]]
            words[w][2] = offsets[t][1]
        return [tuple(v) for v in words.values()]  # type: ignore[misc]

    def fit(self, texts: Sequence[str], entities: Sequence[Sequence[Any]], *, epochs: int = 10,
            batch_size: int = 16, lr: float = 5e-5, seed: int = 0) -> dict[str, float]:
        """Fine-tune encoder and head on texts with their entities; returns the last loss and
        seconds.

        Args:
            texts: the training texts.
            entities: per text, spans ``(start, end, TYPE)`` or entity objects
                (``{"text"|"start","end", "type"}``, see :func:`entity_spans`).

        Raises:
            TaskInputError: no data, an entity type that is not one of :attr:`labels`, or an
                entity that cannot be found in its text.
        """
        torch = require("torch", extra="tasks")
        if not texts or len(texts) != len(entities):
            raise TaskInputError(f"expected one entity list per training text, got "
                                 f"{len(texts)} texts and {len(entities)} entity lists")
        spans = [[tuple(s) if isinstance(s, (tuple, list)) else None for s in ents]
                 for ents in entities]
        spans = [s if all(s) else entity_spans(t, ents, where=f"training text {i}: ")
                 for i, (t, s, ents) in enumerate(zip(texts, spans, entities))]
        unknown = sorted({e[2] for s in spans for e in s} - set(self.labels))
        if unknown:
            raise TaskInputError(f"training entity types {unknown} are not among "
                                 f"{list(self.labels)}")
        self.warm_up()
        enc = self._encode(texts)
        tag_id = {lb: i for i, lb in enumerate(self.head_labels())}
        labels = torch.full(enc["input_ids"].shape, -100, dtype=torch.long)
        for w, k in enumerate(enc["overflow_to_sample_mapping"].tolist()):
            for token, start, end in self._words(enc, w):
                tag = "O"
                for a, b, etype in spans[k]:
                    if start < b and a < end:
                        tag = f"{'B' if start <= a else 'I'}-{etype}"
                        break
                labels[w, token] = tag_id[tag]
        inputs = {k: v for k, v in enc.items()
                  if k not in ("offset_mapping", "overflow_to_sample_mapping")}

        def batch(idx: list[int]) -> dict[str, Any]:
            return {**{k: v[idx] for k, v in inputs.items()}, "labels": labels[idx]}

        return self.train(len(labels), batch, epochs=epochs, batch_size=batch_size, lr=lr,
                          seed=seed)

    def predict(self, texts: Sequence[str], *, batch_size: int = 16) -> list[dict[str, Any]]:
        """The entities of each text, as ``{"entities": [{"text", "type"}, ...]}`` in text order
        (repeats left out, as the LLM path does)."""
        torch = require("torch", extra="tasks")
        model = self.warm_up()
        tags = self.head_labels()
        found: list[set[Span]] = [set() for _ in texts]
        for i in range(0, len(texts), batch_size):
            chunk = list(texts[i:i + batch_size])
            enc = self._encode(chunk)
            inputs = {k: v for k, v in enc.items()
                      if k not in ("offset_mapping", "overflow_to_sample_mapping")}
            with torch.inference_mode():
                predicted = model(**inputs).logits.argmax(-1).tolist()
            for w, k in enumerate(enc["overflow_to_sample_mapping"].tolist()):
                found[i + k] |= self._decode(self._words(enc, w), predicted[w], tags)
        out = []
        for text, spans in zip(texts, found):
            entities: list[dict[str, str]] = []
            for start, end, etype in sorted(spans):
                e = {"text": text[start:end], "type": etype}
                if e not in entities:
                    entities.append(e)
            out.append({"entities": entities})
        return out

    @staticmethod
    def _decode(words: list[tuple[int, int, int]], predicted: list[int],
                tags: Sequence[str]) -> set[Span]:
        """BIO tags of words to spans; an ``I-`` that does not continue its type starts one."""
        spans: set[Span] = set()
        current: list[Any] | None = None
        for token, start, end in words:
            tag = tags[predicted[token]]
            if tag == "O":
                current = None
                continue
            prefix, etype = tag.split("-", 1)
            if prefix == "I" and current is not None and current[2] == etype:
                spans.discard(tuple(current))  # type: ignore[arg-type]
                current[1] = end
            else:
                current = [start, end, etype]
            spans.add(tuple(current))  # type: ignore[arg-type]
        return spans
