"""Synthetic test sets from the user's own ingested chunks, written by the local chat model.

For each sampled chunk the chat model writes one question the chunk answers and a short answer
taken from it, as JSON (with a llama.cpp model a grammar forces valid JSON of the right shape).
Candidates are kept only if they pass the quality filters:

* the question is a real question (3+ words, ends with "?", 10-300 characters);
* the answer is short (at most 200 characters) and not a refusal;
* the answer is grounded: it occurs in the chunk, or most of its tokens do;
* the question does not give the answer away;
* the question is not a near-duplicate of one already kept (rapidfuzz token-set ratio >= 90).

Each case records the chunk as its reference context and relevant id.

ragas has its own test set generator (knowledge graph, personas, multi-hop synthesizers); it makes
many LLM calls per chunk and needs a capable model, far too slow and brittle with a 0.5B model on two
CPU cores, hence this one-call-per-chunk generator. A ragas test set made elsewhere can be imported
with ``appkit eval import --format ragas``.

Example:
    >>> from eval.generate import parse_candidate
    >>> parse_candidate('Sure! {"question": "Who?", "answer": "Ada"}')
    {'question': 'Who?', 'answer': 'Ada'}
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from eval.metrics.citations import supports
from eval.metrics.squad import normalize_answer
from eval.testset import TestCase

SCHEMA = {
    "type": "object",
    "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
    "required": ["question", "answer"],
}
SYSTEM = ("You write test questions for a search system. Use only the passage. "
          "Reply with JSON only.")
PROMPT = (
    "Passage:\n{text}\n\n"
    "Write one specific question that this passage answers, as a reader who has not seen it "
    "would ask it, and the short answer (a few words copied from the passage). "
    'Reply as JSON: {{"question": "...", "answer": "..."}}'
)
_REFUSALS = ("not mentioned", "does not say", "doesn't say", "no information", "not provided",
             "cannot be determined", "unknown", "n/a")
_JSON = re.compile(r"\{.*\}", re.S)


def parse_candidate(text: str) -> dict[str, str] | None:
    """The first JSON object in ``text`` with string ``question`` and ``answer``, or None."""
    match = _JSON.search(text or "")
    if not match:
        return None
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    q, a = data.get("question"), data.get("answer")
    if not isinstance(q, str) or not isinstance(a, (str, int, float)):
        return None
    return {"question": " ".join(q.split()), "answer": " ".join(str(a).split())}


def _grounded(answer: str, chunk: str) -> bool:
    if supports(chunk, answer):
        return True
    tokens = normalize_answer(answer).split()
    if not tokens:
        return False
    have = set(normalize_answer(chunk).split())
    return sum(t in have for t in tokens) / len(tokens) >= 0.75


def reject_reason(candidate: dict[str, str] | None, chunk: str,
                  kept_questions: list[str]) -> str | None:
    """Why a candidate fails the quality filters (None when it passes)."""
    if candidate is None:
        return "not valid JSON with a question and an answer"
    q, a = candidate["question"], candidate["answer"]
    if not (10 <= len(q) <= 300) or len(q.split()) < 3 or not q.endswith("?"):
        return "not a well-formed question"
    if not a or len(a) > 200:
        return "answer empty or too long"
    if any(r in a.lower() for r in _REFUSALS):
        return "answer is a refusal"
    if not _grounded(a, chunk):
        return "answer not found in the chunk"
    na = normalize_answer(a)
    if na and f" {na} " in f" {normalize_answer(q)} ":
        return "question gives the answer away"
    from rapidfuzz import fuzz

    if any(fuzz.token_set_ratio(q, k) >= 90 for k in kept_questions):
        return "near-duplicate question"
    return None


@dataclass
class GenerationReport:
    """What generation did: chunks tried, cases kept, and why candidates were rejected."""

    tried: int = 0
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {"tried": self.tried, "kept": self.kept, "rejected": dict(self.rejected)}


def generate_testset(app: Any, n: int, *, seed: int = 0, min_chars: int = 150,
                     max_tries: int | None = None, progress: bool = True
                     ) -> tuple[list[TestCase], GenerationReport]:
    """Write up to ``n`` test cases from the app's ingested chunks with its chat model.

    Args:
        app: an :class:`~appkit.app.App` whose store holds ingested chunks.
        n: how many cases to keep.
        seed: the chunk sampling seed.
        min_chars: skip chunks shorter than this (headings, fragments).
        max_tries: chunks to try at most (default ``3 * n``).
        progress: show a progress bar.

    Raises:
        AppkitError: when nothing has been ingested.
    """
    from langchain_core.messages import HumanMessage, SystemMessage
    from tqdm.auto import tqdm

    from appkit.errors import AppkitError

    chunks = [c for c in app.store.get() if len(c.page_content.strip()) >= min_chars]
    if not chunks:
        raise AppkitError("no ingested chunk to write questions from; run 'appkit ingest' first")
    random.Random(seed).shuffle(chunks)
    chunks = chunks[: max_tries or 3 * n]
    llm = app.chat_model
    kwargs: dict[str, Any] = {"max_tokens": 160, "temperature": 0.2}
    if getattr(llm, "_llm_type", "") == "appkit-llama-cpp":
        # llama.cpp turns the schema into a grammar: the reply is valid JSON of this shape
        kwargs["response_format"] = {"type": "json_object", "schema": SCHEMA}
    model = str(getattr(llm, "model_name", "") or type(llm).__name__)
    cases: list[TestCase] = []
    report = GenerationReport()
    with tqdm(total=n, desc="writing questions", disable=not progress, leave=False) as bar:
        for chunk in chunks:
            if len(cases) >= n:
                break
            report.tried += 1
            text = chunk.page_content.strip()
            messages = [SystemMessage(SYSTEM), HumanMessage(PROMPT.format(text=text[:2500]))]
            try:
                reply = llm.invoke(messages, **kwargs).text
            except Exception as exc:  # noqa: BLE001 - one failing chunk is skipped, not fatal
                report.rejected[f"model error: {type(exc).__name__}"] += 1
                continue
            candidate = parse_candidate(reply)
            reason = reject_reason(candidate, text, [c.question for c in cases])
            if reason:
                report.rejected[reason] += 1
                continue
            assert candidate is not None
            cid = str(chunk.id or chunk.metadata.get("id", ""))
            cases.append(TestCase(
                question=candidate["question"], reference=candidate["answer"],
                reference_contexts=(text,), relevant_ids=(cid,) if cid else (),
                task=app.profile.task,
                metadata={"source": str(chunk.metadata.get("source", "")), "generated_by": model},
            ))
            report.kept += 1
            bar.update(1)
    return cases, report
