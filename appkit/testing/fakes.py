"""Fakes for fast unit tests: no model files, no network, deterministic.

Example:
    >>> from appkit.testing.fakes import FakeChatModel, HashingEmbeddings
    >>> llm = FakeChatModel(replies=["Paris [1]."])
    >>> llm.invoke("capital of France?").content
    'Paris [1].'
    >>> emb = HashingEmbeddings(dim=8)
    >>> len(emb.embed_query("hello"))
    8
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

from appkit.models.reward import RewardModel

_WORD = re.compile(r"\w+", re.UNICODE)


class HashingEmbeddings(Embeddings):
    """Bag-of-words feature hashing, L2-normalised: texts sharing words are close.

    Unlike random fakes, similar texts get similar vectors, so retrieval tests mean something.
    """

    def __init__(self, dim: int = 256, identity: str = "hashing-256"):
        self.dim = dim
        self.identity = identity
        self.calls = 0  # texts embedded so far, for "nothing re-embedded" assertions

    def _vector(self, text: str) -> list[float]:
        vec = [0.0] * self.dim
        for word in _WORD.findall(text.lower()):
            h = int.from_bytes(hashlib.blake2b(word.encode(), digest_size=8).digest(), "big")
            vec[h % self.dim] += 1.0 if (h >> 63) else -1.0
        norm = math.sqrt(sum(v * v for v in vec))
        if norm == 0:
            vec[0] = 1.0
            return vec
        return [v / norm for v in vec]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += len(texts)
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)

    def tokenize(self, texts: list[str]) -> int:
        """The number of words in ``texts`` (the real embedders count model tokens)."""
        return sum(len(_WORD.findall(t)) for t in texts)


class FakeChatModel(BaseChatModel):
    """A chat model that answers from a queue of replies and records what it was sent.

    When the queue runs out it repeats ``default``. Streaming yields the reply word by word.
    """

    replies: list[str] = Field(default_factory=list)
    default: str = "The documents do not say."
    calls: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "appkit-fake"

    def _next(self, messages: list[BaseMessage]) -> str:
        self.calls.append(list(messages))
        return self.replies.pop(0) if self.replies else self.default

    def get_num_tokens(self, text: str) -> int:
        return max(1, len(text) // 4)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        text = self._next(messages)
        usage = {"input_tokens": sum(len(m.text) // 4 for m in messages),
                 "output_tokens": len(text.split()), "total_tokens": 0}
        usage["total_tokens"] = usage["input_tokens"] + usage["output_tokens"]
        return ChatResult(generations=[ChatGeneration(
            message=AIMessage(content=text, usage_metadata=usage))])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        text = self._next(messages)
        for piece in re.findall(r"\S+\s*|\s+", text):
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk


class FakeRewardModel(RewardModel):
    """A reward model that scores ``(prompt, answer)`` with a function and records every call.

    Example:
        >>> from appkit.testing import FakeRewardModel
        >>> rm = FakeRewardModel(lambda prompt, answer: float("[1]" in answer))
        >>> rm.score("Q", ["no citation", "yes [1]"])
        [0.0, 1.0]
    """

    name = "fake-reward"

    def __init__(self, rule: Any = None):
        self.rule = rule or (lambda prompt, answer: float(len(answer)))
        self.calls: list[tuple[str, str]] = []

    def score_pairs(self, pairs: list[tuple[str, str]]) -> list[float]:
        self.calls += list(pairs)
        return [float(self.rule(p, a)) for p, a in pairs]
