"""``RerankRetriever``: re-order a first stage's candidates with a cross-encoder or the chat model.

A cross-encoder reads query and chunk together, so it judges relevance better than comparing two
separately computed vectors, at the cost of one model pass per candidate (see the latency figures in
``benchmarks/RESULTS_retrievers.md``). No cross-encoder ships offline, so ``appkit retrievers train``
trains one from the packaged MiniLM and registers it in the model catalogue; the profile names it in
``retrievers.rerank_model``.

The LLM reranker asks the local chat model to order a handful of numbered passages (listwise). It
needs no trained model but costs a generation per query, so it suits small candidate sets (<= 10).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from appkit.errors import AppkitError, ModelNotAvailableError
from appkit.lazy import require
from retrievers.base import MAX_LLM_QUERY_CHARS, check_query, with_scores
from retrievers.fusion import reciprocal_rank_fusion


class Reranker(Protocol):
    """Scores chunks for a query: one float per text, higher is more relevant."""

    def score(self, query: str, texts: Sequence[str]) -> list[float]: ...


def resolve_reranker_path(name: str) -> str:
    """A catalogue name or a folder holding a sentence-transformers cross-encoder.

    Raises:
        ModelNotAvailableError: with the command that trains one.
    """
    if not name:
        raise ModelNotAvailableError(
            "no cross-encoder is configured: train one with 'appkit retrievers train --pairs "
            "pairs.jsonl' and set retrievers.rerank_model to the name it prints, or set "
            "retrievers.reranker = \"llm\"")
    from appkit.models.catalogue import resolve_model

    _, path = resolve_model(name)
    return str(path)


_models: dict[tuple, Any] = {}
_models_lock = threading.Lock()


class CrossEncoderReranker:
    """A sentence-transformers ``CrossEncoder``, loaded on first use and shared per process.

    Example:
        >>> from retrievers.rerank import CrossEncoderReranker
        >>> ce = CrossEncoderReranker("minilm-reranker-scifact")  # nothing is loaded yet
        >>> ce.score("what lowers LDL?", ["Statins lower LDL.", "Cats purr."])  # doctest: +SKIP
        [4.2, -6.1]

    Args:
        model: a catalogue name or a cross-encoder folder.
        max_length: tokens per query+chunk pair; longer pairs are truncated (chunk side first).
        batch_size: pairs per forward pass.
    """

    def __init__(self, model: str, *, max_length: int = 256, batch_size: int = 32):
        self.model = model
        self.max_length = max_length
        self.batch_size = batch_size

    def warm_up(self) -> Any:
        path = resolve_reranker_path(self.model)
        key = (path, self.max_length)
        with _models_lock:
            if key not in _models:
                st = require("sentence_transformers", extra="embed")
                _models[key] = st.CrossEncoder(path, device="cpu", max_length=self.max_length,
                                               local_files_only=True)
            return _models[key]

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        model = self.warm_up()
        scores = model.predict([(query, t) for t in texts], batch_size=self.batch_size,
                               show_progress_bar=False, convert_to_numpy=True)
        return [float(s) for s in scores]


RERANK_SYSTEM = (
    "You rank passages by how well they answer a question. Reply with the passage numbers, most "
    "relevant first, separated by commas, and nothing else."
)


class LLMReranker:
    """The chat model orders numbered passages (listwise); unranked passages keep their order.

    Example:
        >>> from appkit.testing import FakeChatModel
        >>> from retrievers.rerank import LLMReranker
        >>> LLMReranker(lambda: FakeChatModel(replies=["2, 1"])).score("q", ["a", "b"])
        [0.5, 1.0]

    Args:
        llm: a callable returning the LangChain chat model (so it loads only when used).
        passage_chars: characters of each passage shown to the model.
    """

    def __init__(self, llm: Callable[[], Any], *, passage_chars: int = 400):
        self.llm = llm
        self.passage_chars = passage_chars

    def score(self, query: str, texts: Sequence[str]) -> list[float]:
        if not texts:
            return []
        passages = "\n\n".join(f"[{i}] {' '.join(t.split())[: self.passage_chars]}"
                               for i, t in enumerate(texts, 1))
        messages = [SystemMessage(RERANK_SYSTEM),
                    HumanMessage(f"Question: {query[:MAX_LLM_QUERY_CHARS]}\n\nPassages:\n{passages}"
                                 f"\n\nRanking:")]
        try:
            reply = self.llm().invoke(messages, max_tokens=8 + 4 * len(texts), temperature=0.0)
            text = reply.text
        except AppkitError:
            raise
        except Exception:  # noqa: BLE001 - a failed generation keeps the first stage's order
            text = ""
        order: list[int] = []
        for m in re.findall(r"\d+", text):
            i = int(m) - 1
            if 0 <= i < len(texts) and i not in order:
                order.append(i)
        order += [i for i in range(len(texts)) if i not in order]
        n = len(texts)
        scores = [0.0] * n
        for rank, i in enumerate(order):
            scores[i] = (n - rank) / n
        return scores


class RerankRetriever(BaseRetriever):
    """A first stage's candidates, re-ordered by a :class:`Reranker`.

    Each document carries ``metadata["score"]`` (the reranker's score, or the blended RRF score when
    ``first_stage_weight`` > 0), ``rerank_score``, ``first_stage_score`` and ``first_stage_rank``;
    ``relevance`` is kept from the first stage.

    Example:
        >>> from retrievers.rerank import CrossEncoderReranker, RerankRetriever
        >>> r = RerankRetriever(base=hybrid, reranker=CrossEncoderReranker("my-reranker"),
        ...                     candidates=20, k=5)  # doctest: +SKIP
        >>> r.invoke("does aspirin prevent colon cancer?")  # doctest: +SKIP

    Attributes:
        base: the first-stage retriever; build it with ``k >= candidates``.
        reranker: anything with ``score(query, texts) -> list[float]``.
        candidates: how many first-stage chunks are scored.
        k: how many chunks to return.
        first_stage_weight: 0 orders by the reranker alone; above 0 the reranker's order and the
            first stage's are fused with RRF, the first stage weighing this much (the reranker 1).
            A reranker trained on little data is often best blended.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    base: BaseRetriever
    reranker: Any
    candidates: int = 20
    k: int = 4
    first_stage_weight: float = 0.0

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                k: int | None = None) -> list[Document]:
        """``k`` overrides the attribute for one call: ``invoke(q, k=3)``."""
        check_query(query)
        k = self.k if k is None else k
        docs = self.base.invoke(query, {"callbacks": run_manager.get_child()})[: self.candidates]
        if not docs:
            return []
        scores = self.reranker.score(query, [d.page_content for d in docs])
        order = sorted(range(len(docs)), key=lambda i: (-scores[i], i))
        final = {i: float(scores[i]) for i in order}
        if self.first_stage_weight > 0:
            fused = reciprocal_rank_fusion([order, list(range(len(docs)))],
                                           [1.0, self.first_stage_weight])
            order = [i for i, _ in fused]
            final = {i: s for i, s in fused}
        return [with_scores(docs[i], score=round(final[i], 6), rerank_score=round(float(scores[i]), 6),
                            first_stage_rank=i + 1,
                            first_stage_score=docs[i].metadata.get("score", 0.0))
                for i in order[:k]]
