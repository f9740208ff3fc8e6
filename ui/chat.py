"""The chat's rules, apart from Streamlit: question limits, what a turn remembers, feedback records.

Example:
    >>> from ui.chat import truncate_question
    >>> truncate_question("x" * 10, limit=4)
    ('xxxx', True)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from langchain_core.documents import Document

from appkit.config import Profile
from appkit.feedback import FeedbackRecord
from appkit.types import Answer
from ui.conversations import Conversation, Turn

MAX_QUESTION_CHARS = 4000
_CITE = re.compile(r"\[(\d{1,3})\]")


def max_question_chars(profile: Profile) -> int:
    """The longest question sent to the model: at most 4000 characters, and about a quarter of
    the context window (a character is roughly a quarter of a token), so sources still fit."""
    return max(200, min(MAX_QUESTION_CHARS, profile.chat.n_ctx))


def truncate_question(question: str, limit: int = MAX_QUESTION_CHARS) -> tuple[str, bool]:
    """The question cut to ``limit`` characters (at a word boundary when one is near) and whether
    it was cut."""
    question = question.strip()
    if len(question) <= limit:
        return question, False
    cut = question[:limit]
    space = cut.rfind(" ")
    if space > limit * 0.9:
        cut = cut[:space]
    return cut.rstrip(), True


_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-!|>~<$])")


def escape_markdown(text: str) -> str:
    """Text shown literally by ``st.markdown`` (a quoted source is not formatting)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def mark_citations(text: str) -> str:
    """Answer text for display: ``[1]`` becomes a small badge, and ``$`` stays a dollar sign
    (Streamlit would start LaTeX with it); other Markdown the model wrote is kept."""
    return _CITE.sub(lambda m: f":blue-badge[{m.group(1)}]", text.replace("$", "\\$"))


def capture_context(app: Any, answer: Answer, history: Sequence[tuple[str, str]]
                    ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """The sources with their full text, and the messages the model saw, for a finished answer.

    Rebuilt from the store by chunk id, in citation order, so the record matches what the chain sent
    (the citations are exactly the chunks that fit the prompt). A chunk gone from the store keeps its
    snippet.
    """
    if not answer.found or not answer.citations:
        return [], []
    from appkit.chains.prompts import answer_messages

    ids = [c.chunk_id for c in answer.citations if c.chunk_id]
    try:
        stored = {d.id: d for d in app.store.get(ids=ids)} if ids else {}
    except Exception:  # noqa: BLE001 - a feedback record must never break the chat
        stored = {}
    contexts, docs = [], []
    for c in answer.citations:
        doc = stored.get(c.chunk_id) or Document(
            page_content=c.snippet, metadata={"source": c.source, "page": c.page,
                                              "heading": c.heading})
        docs.append(doc)
        contexts.append({"index": c.index, "source": c.source, "page": c.page,
                         "heading": c.heading, "chunk_id": c.chunk_id,
                         "relevance": c.relevance, "cited": c.cited, "text": doc.page_content})
    question = answer.standalone_question or answer.question
    messages = answer_messages(app.profile.prompt, question, docs, history)
    roles = {"system": "system", "human": "user", "ai": "assistant"}
    return contexts, [{"role": roles.get(m.type, m.type), "content": m.text} for m in messages]


def feedback_record(turn: Turn, conversation: Conversation, *, rating: int | None,
                    correction: str = "", comment: str = "") -> FeedbackRecord:
    """The durable feedback record of one answer."""
    position = next((i for i, t in enumerate(conversation.turns) if t.id == turn.id),
                    len(conversation.turns))
    history = [[t.question, t.answer.text] for t in conversation.turns[:position]
               if not t.stopped and t.answer.found]
    return FeedbackRecord(
        id=turn.id, question=turn.question, answer=turn.answer.text, rating=rating,
        correction=correction, comment=comment,
        standalone_question=turn.answer.standalone_question,
        contexts=list(turn.contexts) or [
            {"index": c.index, "source": c.source, "page": c.page, "heading": c.heading,
             "chunk_id": c.chunk_id, "relevance": c.relevance, "cited": c.cited,
             "text": c.snippet} for c in turn.answer.citations],
        messages=list(turn.messages), history=history, settings=dict(turn.settings),
        model=turn.answer.model, conversation_id=conversation.id,
    )
