"""Saved conversations: one JSON file per conversation under ``<data dir>/conversations``.

A conversation is a list of turns; each turn keeps the question, the whole
:class:`~appkit.types.Answer` (text, citations, timings), whether it was stopped or its question
truncated, and the settings that produced it, so a reloaded conversation shows exactly what was
seen and can still be given feedback. Files are written atomically.

Example:
    >>> import tempfile
    >>> from appkit.types import Answer
    >>> from ui.conversations import Conversation, ConversationStore
    >>> store = ConversationStore(tempfile.mkdtemp())
    >>> convo = Conversation.new()
    >>> _ = convo.add_turn("Q3 budget?", Answer(question="Q3 budget?", text="40k [1]"))
    >>> store.save(convo)
    >>> store.load(convo.id).turns[0].answer.text
    '40k [1]'
"""

from __future__ import annotations

import json
import os
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from appkit.types import Answer, Citation

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_id() -> str:
    return uuid.uuid4().hex[:16]


def answer_from_dict(data: dict[str, Any]) -> Answer:
    """Rebuild an :class:`Answer` from :meth:`Answer.to_dict` output (unknown keys ignored)."""
    cite_fields = Citation.__dataclass_fields__
    citations = tuple(
        Citation(**{k: v for k, v in c.items() if k in cite_fields})
        for c in data.get("citations", ())
    )
    known = Answer.__dataclass_fields__
    return Answer(**{k: v for k, v in data.items() if k in known and k != "citations"},
                  citations=citations)


@dataclass
class Turn:
    """One question and its answer.

    Attributes:
        id: the answer's id (feedback is keyed by it).
        question: the question as sent to the model (after truncation).
        answer: the answer, partial when ``stopped``.
        stopped: the user stopped the answer before it finished.
        truncated: the question was cut to the length limit.
        settings: the profile settings the answer was produced with.
        at: when it was asked (ISO 8601, UTC).
        contexts: the sources given to the model with their full text (for feedback records).
        messages: the chat messages the model saw, ``[{"role", "content"}]``.
    """

    id: str
    question: str
    answer: Answer
    stopped: bool = False
    truncated: bool = False
    settings: dict[str, Any] = field(default_factory=dict)
    at: str = ""
    contexts: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["answer"] = self.answer.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Turn:
        return cls(id=str(data["id"]), question=str(data.get("question", "")),
                   answer=answer_from_dict(data.get("answer") or {"question": "", "text": ""}),
                   stopped=bool(data.get("stopped", False)),
                   truncated=bool(data.get("truncated", False)),
                   settings=dict(data.get("settings") or {}), at=str(data.get("at", "")),
                   contexts=list(data.get("contexts") or []),
                   messages=list(data.get("messages") or []))


@dataclass
class Conversation:
    """A chat: its turns in order, a title and the profile it ran against."""

    id: str
    title: str = ""
    profile: str = ""
    turns: list[Turn] = field(default_factory=list)
    created_at: str = ""
    updated_at: str = ""

    @classmethod
    def new(cls, profile: str = "") -> Conversation:
        now = _now()
        return cls(id=new_id(), profile=profile, created_at=now, updated_at=now)

    @property
    def history(self) -> list[tuple[str, str]]:
        """(question, answer) pairs for the chain's follow-up handling (stopped answers left out)."""
        return [(t.question, t.answer.text) for t in self.turns if not t.stopped and t.answer.found]

    def add_turn(self, question: str, answer: Answer, *, stopped: bool = False,
                 truncated: bool = False, settings: dict[str, Any] | None = None) -> Turn:
        turn = Turn(id=new_id(), question=question, answer=answer, stopped=stopped,
                    truncated=truncated, settings=dict(settings or {}), at=_now())
        self.turns.append(turn)
        if not self.title:
            self.title = " ".join(question.split())[:60]
        self.updated_at = turn.at
        return turn

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "profile": self.profile,
                "created_at": self.created_at, "updated_at": self.updated_at,
                "turns": [t.to_dict() for t in self.turns]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Conversation:
        return cls(id=str(data["id"]), title=str(data.get("title", "")),
                   profile=str(data.get("profile", "")),
                   turns=[Turn.from_dict(t) for t in data.get("turns", ())],
                   created_at=str(data.get("created_at", "")),
                   updated_at=str(data.get("updated_at", "")))


class ConversationStore:
    """Conversations as JSON files in one folder.

    Example:
        >>> import tempfile
        >>> from ui.conversations import ConversationStore
        >>> ConversationStore(tempfile.mkdtemp()).list()
        []

    Args:
        folder: where the files live (created on the first save).
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    @classmethod
    def for_data_dir(cls, data_dir: str | os.PathLike) -> ConversationStore:
        return cls(Path(data_dir) / "conversations")

    def _path(self, conversation_id: str) -> Path:
        if not _ID.match(conversation_id):
            raise ValueError(f"not a conversation id: {conversation_id!r}")
        return self.folder / f"{conversation_id}.json"

    def save(self, conversation: Conversation) -> None:
        """Write the conversation atomically (a crash never leaves half a file)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self._path(conversation.id)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(conversation.to_dict(), ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)

    def load(self, conversation_id: str) -> Conversation | None:
        try:
            data = json.loads(self._path(conversation_id).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return Conversation.from_dict(data)

    def delete(self, conversation_id: str) -> None:
        self._path(conversation_id).unlink(missing_ok=True)

    def list(self) -> list[dict[str, Any]]:
        """Summaries (id, title, turns, updated_at), most recently updated first.

        Unreadable files are left out rather than breaking the list.
        """
        out = []
        if not self.folder.is_dir():
            return out
        for path in self.folder.glob("*.json"):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                out.append({"id": str(data["id"]), "title": str(data.get("title") or "Untitled"),
                            "turns": len(data.get("turns", ())),
                            "updated_at": str(data.get("updated_at", ""))})
            except (OSError, ValueError, KeyError, TypeError):
                continue
        out.sort(key=lambda c: c["updated_at"], reverse=True)
        return out
