"""Shared types: chunks are LangChain ``Document`` s; answers carry their :class:`Citation` s.

Example:
    >>> from appkit.types import Answer, Citation
    >>> c = Citation(index=1, source="/docs/budget.md", page=None, heading="Q3", snippet="40k",
    ...              chunk_id="x", relevance=0.8, cited=True)
    >>> c.label
    'budget.md > Q3'
    >>> Answer(question="q", text="40k [1]", citations=(c,)).cited[0].index
    1
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from langchain_core.documents import Document


@dataclass(frozen=True)
class Citation:
    """A numbered source given to the model, and whether the answer cited it.

    Attributes:
        index: the number the model saw, ``[index]``.
        source: the file path.
        page: the 1-based page for paged formats, else None.
        heading: the section heading trail, or "".
        snippet: the start of the chunk's text.
        chunk_id: the store id of the chunk.
        relevance: retrieval score (0..1 for dense retrieval).
        cited: the answer refers to ``[index]``.
    """

    index: int
    source: str
    page: int | None
    heading: str
    snippet: str
    chunk_id: str
    relevance: float
    cited: bool = False

    @property
    def label(self) -> str:
        """``file:page`` or ``file > heading`` for display."""
        name = os.path.basename(self.source)
        if self.page is not None:
            return f"{name}:{self.page}"
        return f"{name} > {self.heading}" if self.heading else name

    @classmethod
    def from_document(cls, index: int, doc: Document, *, cited: bool = False,
                      snippet_chars: int = 200) -> Citation:
        meta = doc.metadata
        page = meta.get("page")
        text = " ".join(doc.page_content.split())
        return cls(
            index=index,
            source=str(meta.get("source", "")),
            page=int(page) if isinstance(page, (int, float)) else None,
            heading=str(meta.get("heading", "") or ""),
            snippet=text[:snippet_chars] + ("…" if len(text) > snippet_chars else ""),
            chunk_id=str(doc.id or meta.get("id", "")),
            relevance=float(meta.get("relevance", 0.0)),
            cited=cited,
        )


@dataclass(frozen=True)
class Answer:
    """A grounded answer.

    Attributes:
        question: what the user asked.
        text: the model's answer.
        citations: every source given to the model, in prompt order (``cited`` marks the used ones).
        standalone_question: the question after condensing it with the chat history.
        found: false when retrieval found nothing relevant (the model was not called).
        usage: token counts from the model.
        timings: seconds spent per step (retrieve, condense, generate, first_token).
        model: the chat model's name.
    """

    question: str
    text: str
    citations: tuple[Citation, ...] = ()
    standalone_question: str = ""
    found: bool = True
    usage: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    model: str = ""

    @property
    def cited(self) -> tuple[Citation, ...]:
        """The sources the answer refers to."""
        return tuple(c for c in self.citations if c.cited)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["citations"] = [dict(asdict(c), label=c.label) for c in self.citations]
        return data
