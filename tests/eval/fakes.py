"""A fake ragas judge for unit tests: deterministic verdicts, garbage or slowness on demand.

The judge's NLI verdict is 1 when a statement's words all occur in the context. Answers containing
``GARBAGE`` make it return unparsable output; ``SLOW`` makes it hang past any timeout.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import pytest

pytest.importorskip("ragas")

from ragas.llms.base import InstructorBaseRagasLLM  # noqa: E402
from ragas.metrics.collections.faithfulness.util import (  # noqa: E402
    NLIStatementOutput,
    StatementFaithfulnessAnswer,
    StatementGeneratorOutput,
)

_WORDS = re.compile(r"[a-z0-9]+")


def _field(prompt: str, name: str) -> str:
    """The value of ``"name": "..."`` in the last JSON input block of a ragas prompt."""
    found = re.findall(rf'"{name}": "((?:[^"\\]|\\.)*)"', prompt)
    return found[-1] if found else ""


class FakeRagasLLM(InstructorBaseRagasLLM):
    def __init__(self) -> None:
        self.calls = 0
        self.is_async = True

    def generate(self, prompt: str, response_model: Any) -> Any:  # pragma: no cover
        raise NotImplementedError

    async def agenerate(self, prompt: str, response_model: Any) -> Any:
        self.calls += 1
        if "SLOW" in prompt:
            await asyncio.sleep(30)
        if "GARBAGE" in prompt:
            return response_model.model_validate_json("I think it is fine")
        if response_model is StatementGeneratorOutput:
            return StatementGeneratorOutput(statements=[_field(prompt, "answer")])
        if response_model is NLIStatementOutput:
            context = set(_WORDS.findall(_field(prompt, "context").lower()))
            statements = re.findall(r'"statements": \[\s*((?:"(?:[^"\\]|\\.)*",?\s*)*)\]', prompt)
            items = re.findall(r'"((?:[^"\\]|\\.)*)"', statements[-1]) if statements else []
            return NLIStatementOutput(statements=[
                StatementFaithfulnessAnswer(
                    statement=s, reason="fake",
                    verdict=int(set(_WORDS.findall(s.lower())) <= context))
                for s in items])
        raise AssertionError(f"unexpected response model {response_model}")


class FakeJudge:
    """Stands in for :class:`eval.judge.Judge`."""

    def __init__(self, name: str = "fake-judge", timeout: float = 5.0) -> None:
        self.name = name
        self.timeout = timeout
        self.caveat = "fake judge"
        self.llm = FakeRagasLLM()
        self.closed = False

    def ragas_llm(self) -> FakeRagasLLM:
        return self.llm

    def close(self) -> None:
        self.closed = True
