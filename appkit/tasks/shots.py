"""Worked examples for one- and few-shot prompts, chosen from a pool by embedding similarity.

Example:
    >>> from appkit.tasks.shots import Shot, select_shots
    >>> from appkit.testing import HashingEmbeddings
    >>> pool = [Shot("the cat sat", "animal"), Shot("stock prices fell", "finance")]
    >>> [s.output for s in select_shots(pool, "shares and prices", 1, HashingEmbeddings())]
    ['finance']
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appkit.errors import AppkitError
from appkit.jsonl import read_jsonl

SHOT_COUNTS = {"zero-shot": 0, "one-shot": 1}


@dataclass(frozen=True)
class Shot:
    """One worked example: an input and the output the task should give for it."""

    input: str
    output: str


def load_pool(path: str | Path) -> list[Shot]:
    """Read a JSONL pool of ``{"input": ..., "output": ...}`` lines (output may be JSON).

    Raises:
        AppkitError: naming the file and line of a malformed example.
    """
    p = Path(path)
    shots = []
    for no, row in read_jsonl(p, "the example pool"):
        if "input" not in row or "output" not in row:
            raise AppkitError(f"{p}, line {no}: expected a JSON object with 'input' and 'output'")
        output = row["output"]
        shots.append(Shot(str(row["input"]), output if isinstance(output, str)
                          else json.dumps(output, ensure_ascii=False)))
    return shots


def shot_count(mode: str, few: int) -> int:
    """How many examples a prompt mode uses (``few`` for few-shot)."""
    return SHOT_COUNTS.get(mode, few)


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def select_shots(pool: Sequence[Shot], text: str, k: int, embeddings: Any = None) -> list[Shot]:
    """The ``k`` examples most similar to ``text`` (the first ``k`` without an embedder).

    Args:
        pool: candidate examples.
        text: the input the prompt is for.
        k: how many to return.
        embeddings: a LangChain ``Embeddings``; None keeps the pool's order.
    """
    if k <= 0 or not pool:
        return []
    if embeddings is None or len(pool) <= k:
        return list(pool[:k])
    vectors = embeddings.embed_documents([s.input for s in pool])
    query = embeddings.embed_query(text)
    ranked = sorted(range(len(pool)), key=lambda i: -_cosine(vectors[i], query))
    return [pool[i] for i in ranked[:k]]
