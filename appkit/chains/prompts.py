"""Prompt building for grounded answers: numbered sources, zero/one/few-shot, a token budget.

Example:
    >>> from appkit.chains.prompts import format_sources
    >>> from langchain_core.documents import Document
    >>> print(format_sources([Document(page_content="Paris.", metadata={"source": "/d/f.md"})]))
    [1] (f.md)
    Paris.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence

from langchain_core.documents import Document
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from appkit.config import PromptConfig

_CONTROL = re.compile(r"<\|[^<>|]{0,40}\|>|</?(?:tool_call|tool_response|tools|document)>",
                      re.IGNORECASE)


def neutralize(text: str) -> str:
    """Remove chat-template control markup (``<|im_start|>``, ``<tool_call>`` …) from untrusted text,
    so a document cannot end the user's turn and open a system or assistant turn of its own."""
    return _CONTROL.sub("", text)


CONDENSE_SYSTEM = (
    "Rewrite the user's last question so that it can be understood without the conversation. "
    "Keep names and details from the conversation. Reply with the rewritten question only."
)


def source_label(doc: Document) -> str:
    meta = doc.metadata
    name = os.path.basename(str(meta.get("source", "")))
    if meta.get("page") is not None:
        return f"{name}, page {meta['page']}"
    if meta.get("heading"):
        return f"{name}, {meta['heading']}"
    return name


def format_sources(docs: Sequence[Document], start: int = 1) -> str:
    """Number the chunks ``[1]``, ``[2]`` … with their file (and page or heading)."""
    return "\n\n".join(
        f"[{i}] ({source_label(d)})\n{neutralize(d.page_content.strip())}"
        for i, d in enumerate(docs, start)
    )


def shot_messages(prompt: PromptConfig) -> list[BaseMessage]:
    """The worked examples of one- or few-shot mode as prior turns (none for zero-shot)."""
    count = {"zero-shot": 0, "one-shot": 1, "few-shot": len(prompt.examples)}[prompt.mode]
    messages: list[BaseMessage] = []
    for ex in prompt.examples[:count]:
        context = ex.context or "(no sources)"
        messages.append(HumanMessage(prompt.template.format(context=f"[1] {context}",
                                                            question=ex.question)))
        messages.append(AIMessage(ex.answer))
    return messages


def history_messages(history: Sequence[tuple[str, str]], turns: int = 2) -> list[BaseMessage]:
    """The last ``turns`` question/answer pairs of a conversation."""
    out: list[BaseMessage] = []
    for question, answer in list(history)[-turns:]:
        out += [HumanMessage(question), AIMessage(answer)]
    return out


def fit_sources(docs: Sequence[Document], budget: int,
                count_tokens: Callable[[str], int]) -> list[Document]:
    """Keep chunks in rank order while their formatted text fits ``budget`` tokens."""
    kept: list[Document] = []
    used = 0
    for d in docs:
        cost = count_tokens(f"[{len(kept) + 1}] ({source_label(d)})\n{d.page_content}") + 2
        if used + cost > budget:
            continue
        kept.append(d)
        used += cost
    return kept


def answer_messages(prompt: PromptConfig, question: str, docs: Sequence[Document],
                    history: Sequence[tuple[str, str]] = ()) -> list[BaseMessage]:
    """System, worked examples, recent history, then the sources and the question."""
    return [
        SystemMessage(prompt.system),
        *shot_messages(prompt),
        *history_messages(history),
        HumanMessage(prompt.template.format(context=format_sources(docs), question=question)),
    ]


def condense_messages(question: str, history: Sequence[tuple[str, str]]) -> list[BaseMessage]:
    """Ask the model for a standalone version of a follow-up question."""
    convo = "\n".join(f"User: {q}\nAssistant: {a}" for q, a in list(history)[-3:])
    return [
        SystemMessage(CONDENSE_SYSTEM),
        HumanMessage(f"Conversation:\n{convo}\n\nLast question: {question}\n\nRewritten question:"),
    ]
