"""Fakes for the app's tests and demos: an app that answers from the documents with no model files.

Point the app at them with ``APPKIT_UI_APP_FACTORY=ui.testing:fake_app``. The embedder is
:class:`~appkit.testing.HashingEmbeddings`; the chat model quotes the first sentence of source ``[1]``
and cites it, so an answer really comes from the uploaded document. ``APPKIT_UI_FAKE_DELAY`` (seconds
per word, default 0) slows streaming down enough to press Stop.

Example:
    >>> from ui.testing import ExtractiveChatModel
    >>> from langchain_core.messages import HumanMessage
    >>> llm = ExtractiveChatModel()
    >>> llm.invoke([HumanMessage("Sources:\\n[1] (a.md)\\nThe budget is 40k. Later.\\n\\nQuestion: q")]).content
    'The budget is 40k [1].'
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk

from appkit.app import App
from appkit.config import Profile
from appkit.testing import FakeChatModel, HashingEmbeddings

_SOURCE_ONE = re.compile(r"^\[1\] \([^\n]*\)\n(.+?)(?:\n\n\[2\] |\n\nQuestion:|\Z)", re.S | re.M)


class ExtractiveChatModel(FakeChatModel):
    """Answers with the first sentence of source ``[1]`` and a ``[1]`` citation.

    Condensing requests (no numbered sources) get the last question back unchanged.
    """

    delay: float = 0.0
    model_name: str = "fake-extractive"

    def _next(self, messages: list[BaseMessage]) -> str:
        self.calls.append(list(messages))
        last = messages[-1].text if messages else ""
        if "Last question:" in last:
            return last.split("Last question:", 1)[1].split("\n\n", 1)[0].strip()
        match = _SOURCE_ONE.search(last)
        if not match:
            return self.default
        text = " ".join(line for line in match.group(1).splitlines()
                        if not line.lstrip().startswith("#"))
        text = " ".join(text.split())
        sentence = re.split(r"(?<=[.!?])\s", text, maxsplit=1)[0].rstrip(".!?")
        return f"{sentence} [1]."

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        for chunk in super()._stream(messages, stop, run_manager, **kwargs):
            if self.delay:
                time.sleep(self.delay)
            yield chunk


def fake_app(profile: Profile) -> App:
    """An :class:`App` with hashing embeddings and the extractive fake chat model."""
    delay = float(os.environ.get("APPKIT_UI_FAKE_DELAY", "0") or 0)
    return App(profile, embeddings=HashingEmbeddings(),
               chat_model=ExtractiveChatModel(delay=delay))
