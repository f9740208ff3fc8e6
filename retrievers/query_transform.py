"""``QueryTransformRetriever``: rewrite the query with the local chat model before retrieving.

Two transformations, each switchable:

* **Follow-up condensation**: with a conversation history, "and what about the second one?" becomes
  a standalone question (the same prompt the RAG chain uses).
* **Multi-query expansion**: the model writes ``n_queries`` alternative phrasings; the base retriever
  runs for each and the rankings are fused with RRF (the original query weighted highest).

A generation that fails or returns nothing usable leaves the original query alone: query
transformation can only add recall, never break retrieval.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from appkit.errors import AppkitError
from retrievers.base import MAX_LLM_QUERY_CHARS, check_query, with_scores
from retrievers.fusion import reciprocal_rank_fusion

EXPAND_SYSTEM = (
    "You help a search engine. Write {n} different search queries that would find passages "
    "answering the user's question: use other words, synonyms and related technical terms. "
    "One query per line, no numbering, no explanations."
)
_LIST_MARK = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s*")


def parse_queries(text: str, n: int, original: str) -> list[str]:
    """The model's lines as queries: list marks stripped, blanks and repeats of the original dropped."""
    out: list[str] = []
    for line in text.splitlines():
        q = _LIST_MARK.sub("", line).strip().strip('"').strip()
        if len(q) < 3 or q.lower() == original.strip().lower() or q in out:
            continue
        out.append(q)
    return out[:n]


class QueryTransformRetriever(BaseRetriever):
    """Condense follow-ups and expand queries with the chat model, then retrieve and fuse.

    Each document carries ``metadata["score"]`` (fused RRF score over the queries) and
    ``metadata["queries"]`` (how many of the queries found it); ``relevance`` is the best the base
    retriever reported for it.

    Example:
        >>> from appkit.testing import FakeChatModel
        >>> from retrievers.query_transform import QueryTransformRetriever
        >>> r = QueryTransformRetriever(base=hybrid, llm=lambda: FakeChatModel(),
        ...                             n_queries=3)  # doctest: +SKIP
        >>> r.invoke_with_history("and its side effects?", [("What is metformin?", "A drug.")])  # doctest: +SKIP

    Attributes:
        base: the retriever run for each query.
        llm: a callable returning the chat model (loaded only when used).
        k: how many chunks to return.
        expand: write alternative phrasings (``retrievers.query_expansion``).
        n_queries: how many alternatives.
        condense: rewrite follow-ups using ``history`` (``retrieval.condense_history``).
        history: (question, answer) turns used by ``invoke``; see :meth:`invoke_with_history`.
        original_weight: the original query's weight in fusion (alternatives weigh 1).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    base: BaseRetriever
    llm: Callable[[], Any] | None = None
    k: int = 4
    expand: bool = True
    n_queries: int = 3
    condense: bool = True
    history: list[tuple[str, str]] = Field(default_factory=list)
    original_weight: float = 2.0

    def _chat(self, messages: list, max_tokens: int) -> str:
        if self.llm is None:
            return ""
        try:
            return self.llm().invoke(messages, max_tokens=max_tokens, temperature=0.0).text
        except AppkitError:
            raise
        except Exception:  # noqa: BLE001 - e.g. a prompt past the context: keep the original query
            return ""

    def standalone(self, question: str, history: Sequence[tuple[str, str]]) -> str:
        """The follow-up rewritten to stand alone (unchanged without history or condensing)."""
        if not history or not self.condense:
            return question
        from appkit.chains.prompts import condense_messages

        lines = self._chat(condense_messages(question[:MAX_LLM_QUERY_CHARS], history), 64)
        first = lines.strip().strip('"').splitlines()
        return first[0].strip() if first and first[0].strip() else question

    def expansions(self, query: str) -> list[str]:
        """Alternative phrasings of ``query`` (empty when expansion is off or fails)."""
        if not self.expand or self.n_queries < 1:
            return []
        messages = [SystemMessage(EXPAND_SYSTEM.format(n=self.n_queries)),
                    HumanMessage(query[:MAX_LLM_QUERY_CHARS])]
        return parse_queries(self._chat(messages, 32 * self.n_queries), self.n_queries, query)

    def invoke_with_history(self, question: str, history: Sequence[tuple[str, str]],
                            config: Any = None) -> list[Document]:
        """Retrieve for a follow-up question in a conversation."""
        return self.model_copy(update={"history": list(history)}).invoke(question, config)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                k: int | None = None) -> list[Document]:
        """``k`` overrides the attribute for one call: ``invoke(q, k=3)``."""
        check_query(query)
        k = self.k if k is None else k
        query = self.standalone(query, self.history)
        queries = [query, *self.expansions(query)]
        rankings, best = [], {}
        hits: dict[str, int] = {}
        for q in queries:
            docs = self.base.invoke(q, {"callbacks": run_manager.get_child()})
            rankings.append([d.id for d in docs])
            for d in docs:
                hits[d.id] = hits.get(d.id, 0) + 1
                prev = best.get(d.id)
                if prev is None or d.metadata.get("relevance", 0.0) > prev.metadata.get("relevance", 0.0):
                    best[d.id] = d
        weights = [self.original_weight] + [1.0] * (len(queries) - 1)
        fused = reciprocal_rank_fusion(rankings, weights)[:k]
        return [with_scores(best[i], score=round(s, 6), queries=hits[i],
                            standalone_query=query) for i, s in fused]
