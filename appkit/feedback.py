"""Answer feedback: a durable store of rated answers, exported as preference pairs and as an eval set.

Every answer a person judges becomes one :class:`FeedbackRecord`: the question, the exact messages the
model saw (system text, worked examples, recent history, numbered sources), the contexts in full, the
answer, a thumbs rating, an optional corrected answer and the settings that produced it. Records live
in SQLite (``<data dir>/feedback.sqlite``), keyed by the answer's id, so rating the same answer again
updates its record instead of adding one.

Two exports feed the layers above the core:

- :func:`preference_pairs`: ``{"prompt", "chosen", "rejected", ...}`` rows for DPO. A corrected answer
  is chosen over the model's answer; and between two answers given the *same* prompt, a thumbs-up
  answer is chosen over a thumbs-down one.
- :func:`eval_set`: ``{"question", "reference", "contexts", ...}`` rows: a corrected answer, or an
  answer rated thumbs-up, is the reference.

The store lives in the core (not in ``ui``) so that ``finetune`` and ``eval`` can read it directly.

Example:
    >>> import tempfile, pathlib
    >>> from appkit.feedback import FeedbackRecord, FeedbackStore, preference_pairs
    >>> store = FeedbackStore(pathlib.Path(tempfile.mkdtemp()) / "feedback.sqlite")
    >>> store.put(FeedbackRecord(id="a1", question="Q3 budget?", answer="50k [1]", rating=-1,
    ...                          correction="40k [1]", messages=[{"role": "user", "content": "Q3?"}]))
    >>> [(p["chosen"], p["rejected"]) for p in preference_pairs(store.all())]
    [('40k [1]', '50k [1]')]
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from itertools import product
from pathlib import Path
from typing import Any

FEEDBACK_FILENAME = "feedback.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    rating INTEGER,
    corrected INTEGER NOT NULL,
    question TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_updated ON feedback(updated_at);
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class FeedbackRecord:
    """One judged answer, with everything needed to learn from it or test against it.

    Attributes:
        id: the answer's id (one record per answer).
        question: what the user asked.
        answer: what the model answered.
        rating: 1 (thumbs up), -1 (thumbs down) or None (not rated, e.g. only corrected).
        correction: the answer the user says it should have been, or "".
        comment: a free-text note, or "".
        standalone_question: the question after condensing it with the history.
        contexts: the numbered sources given to the model: ``index``, ``source``, ``page``,
            ``heading``, ``chunk_id``, ``relevance``, ``cited`` and the chunk's full ``text``.
        messages: the chat messages the model saw, ``[{"role": ..., "content": ...}]``.
        history: the earlier (question, answer) turns of the conversation.
        settings: the profile settings that produced the answer (model, retriever, generation,
            prompt mode, ...).
        model: the chat model's name.
        conversation_id: the conversation the answer belongs to.
        created_at: when the record was first written (ISO 8601, UTC).
        updated_at: when it last changed.
    """

    id: str
    question: str
    answer: str
    rating: int | None = None
    correction: str = ""
    comment: str = ""
    standalone_question: str = ""
    contexts: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)
    history: list[list[str]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    model: str = ""
    conversation_id: str = ""
    created_at: str = ""
    updated_at: str = ""

    @property
    def corrected(self) -> bool:
        """The user wrote a correction that differs from the answer."""
        return bool(self.correction.strip()) and self.correction.strip() != self.answer.strip()

    @property
    def prompt_key(self) -> str:
        """Answers with equal keys were produced from the same prompt."""
        return json.dumps(self.messages or [{"role": "user", "content": self.question}],
                          sort_keys=True, ensure_ascii=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeedbackRecord:
        """Read a record, ignoring keys this version does not know (records outlive code)."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


class FeedbackStore:
    """Feedback records in one SQLite file (safe to share between threads of one process).

    Example:
        >>> import tempfile, pathlib
        >>> from appkit.feedback import FeedbackRecord, FeedbackStore
        >>> store = FeedbackStore(pathlib.Path(tempfile.mkdtemp()) / "feedback.sqlite")
        >>> store.put(FeedbackRecord(id="a1", question="q", answer="a", rating=1))
        >>> store.get("a1").rating, store.count()
        (1, 1)

    Args:
        path: the SQLite file (created with its folder if missing).
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None,
                                   timeout=10)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()

    @classmethod
    def for_data_dir(cls, data_dir: str | os.PathLike) -> FeedbackStore:
        """The store of a profile's data directory (``profile.data_dir``)."""
        return cls(Path(data_dir) / FEEDBACK_FILENAME)

    def close(self) -> None:
        self._db.close()

    def put(self, record: FeedbackRecord) -> None:
        """Insert or replace the record with ``record.id`` (keeping its first ``created_at``)."""
        with self._lock:
            old = self._db.execute("SELECT created_at FROM feedback WHERE id = ?",
                                   (record.id,)).fetchone()
            now = _now()
            record.created_at = old[0] if old else (record.created_at or now)
            record.updated_at = now
            self._db.execute(
                "INSERT OR REPLACE INTO feedback VALUES (?,?,?,?,?,?,?)",
                (record.id, record.created_at, record.updated_at, record.rating,
                 int(record.corrected), record.question,
                 json.dumps(record.to_dict(), ensure_ascii=False)),
            )

    def get(self, record_id: str) -> FeedbackRecord | None:
        with self._lock:
            row = self._db.execute("SELECT record FROM feedback WHERE id = ?",
                                   (record_id,)).fetchone()
        return FeedbackRecord.from_dict(json.loads(row[0])) if row else None

    def all(self) -> list[FeedbackRecord]:
        """Every record, newest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT record FROM feedback ORDER BY updated_at DESC, id").fetchall()
        return [FeedbackRecord.from_dict(json.loads(r[0])) for r in rows]

    def delete(self, record_ids: Iterable[str]) -> None:
        with self._lock:
            self._db.executemany("DELETE FROM feedback WHERE id = ?", [(i,) for i in record_ids])

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0])

    def summary(self) -> dict[str, int]:
        """Counts of ``up``, ``down`` and ``corrected`` records and the ``total``."""
        with self._lock:
            up, down, corrected, total = self._db.execute(
                "SELECT COALESCE(SUM(rating = 1), 0), COALESCE(SUM(rating = -1), 0), "
                "COALESCE(SUM(corrected), 0), COUNT(*) FROM feedback").fetchone()
        return {"up": int(up), "down": int(down), "corrected": int(corrected), "total": int(total)}


# --- exports ---------------------------------------------------------------------------------


def _prompt_parts(record: FeedbackRecord) -> tuple[str, str]:
    """The system text and the final user message (sources and question) of a record."""
    messages = record.messages or [{"role": "user", "content": record.question}]
    system = next((m["content"] for m in messages if m.get("role") == "system"), "")
    last_user = next((m["content"] for m in reversed(messages) if m.get("role") == "user"),
                     record.question)
    return system, last_user


def _pair(chosen_from: FeedbackRecord, chosen: str, rejected: str, kind: str,
          rejected_id: str) -> dict[str, Any]:
    system, prompt = _prompt_parts(chosen_from)
    return {
        "id": f"{chosen_from.id}>{rejected_id}" if rejected_id != chosen_from.id else chosen_from.id,
        "prompt": prompt,
        "chosen": chosen,
        "rejected": rejected,
        "system": system,
        "messages": chosen_from.messages,
        "question": chosen_from.question,
        "contexts": [c.get("text", "") for c in chosen_from.contexts],
        "origin": kind,
        "settings": chosen_from.settings,
    }


def preference_pairs(records: Iterable[FeedbackRecord]) -> list[dict[str, Any]]:
    """Preference pairs for DPO, one dict per pair.

    ``prompt`` is the final user message (numbered sources and the question) and ``messages`` the
    whole conversation the model saw, system text first, so a trainer can use either the standard
    (``prompt``/``chosen``/``rejected`` strings) or the conversational format. ``origin`` is
    ``"correction"`` (the user's text over the model's answer) or ``"rating"`` (a thumbs-up answer
    over a thumbs-down one given the identical prompt).
    """
    records = list(records)
    pairs: list[dict[str, Any]] = []
    for r in records:
        if r.corrected:
            pairs.append(_pair(r, r.correction.strip(), r.answer.strip(), "correction", r.id))
    groups: dict[str, list[FeedbackRecord]] = {}
    for r in records:
        groups.setdefault(r.prompt_key, []).append(r)
    for group in groups.values():
        good = [r for r in group if r.rating == 1]
        bad = [r for r in group if r.rating == -1]
        for g, b in product(good, bad):
            if g.answer.strip() != b.answer.strip():
                pairs.append(_pair(g, g.answer.strip(), b.answer.strip(), "rating", b.id))
    return pairs


def stored_preference_pairs(data_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """:func:`preference_pairs` of every record in ``<data dir>/feedback.sqlite``."""
    store = FeedbackStore.for_data_dir(data_dir)
    try:
        return preference_pairs(store.all())
    finally:
        store.close()


def eval_set(records: Iterable[FeedbackRecord]) -> list[dict[str, Any]]:
    """Questions with reference answers: the correction, else an answer rated thumbs-up.

    Rows follow ``eval.testset``'s format: ``id``, ``question``, ``reference``,
    ``reference_contexts`` (the full text of the chunks the answer cited), ``relevant_ids`` (their
    files) and ``task``; plus ``contexts`` and ``sources`` (every chunk given to the model),
    ``answer`` (what the model said) and ``rating``. Answers rated down without a correction have no
    reference and are left out.
    """
    rows = []
    for r in records:
        if r.corrected:
            reference = r.correction.strip()
        elif r.rating == 1:
            reference = r.answer.strip()
        else:
            continue
        cited = [c for c in r.contexts if c.get("cited")]
        rows.append({
            "id": r.id,
            "question": r.question,
            "reference": reference,
            "reference_contexts": [c.get("text", "") for c in cited],
            "relevant_ids": list(dict.fromkeys(c.get("source", "") for c in cited if c.get("source"))),
            "contexts": [c.get("text", "") for c in r.contexts],
            "sources": [c.get("source", "") for c in r.contexts],
            "answer": r.answer,
            "rating": r.rating,
            "task": "qa",
        })
    return rows


def to_jsonl(rows: Iterable[dict[str, Any]]) -> str:
    """Rows as JSON Lines text (UTF-8, one object per line)."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | os.PathLike) -> int:
    """Write rows as JSON Lines atomically; returns how many were written."""
    rows = list(rows)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(to_jsonl(rows), encoding="utf-8")
    os.replace(tmp, p)
    return len(rows)


def iter_jsonl(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """Read JSON Lines, skipping blank lines."""
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)
