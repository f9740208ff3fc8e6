"""``ContextExpansionRetriever``: give each hit its neighbouring chunks from the same file.

A chunk cut at 1,000 characters often starts mid-argument. The ingestor stores ``source``,
``chunk_index`` and ``start_index`` on every chunk, so the ``window`` chunks before and after a hit
can be fetched from Chroma and stitched back into one passage (the overlap between neighbours is
removed using ``start_index``). Hits already covered by an earlier hit's window are dropped, and
neighbours already shown are not repeated, so the model never reads the same chunk twice.
"""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from retrievers.base import check_query


def stitch(chunks: list[Document]) -> str:
    """Join consecutive chunks of one file, dropping the text neighbours share."""
    text = ""
    end = None  # character offset in the file where ``text`` ends, when known
    for c in chunks:
        start = c.metadata.get("start_index")
        body = c.page_content
        if end is not None and isinstance(start, int) and 0 <= start < end:
            body = body[end - start:]
        elif text:
            text += "\n"
        text += body
        end = start + len(c.page_content) if isinstance(start, int) and start >= 0 else None
    return text


class ContextExpansionRetriever(BaseRetriever):
    """A base retriever's hits, each widened to its neighbouring chunks.

    Each document keeps the hit's metadata (scores included) and adds ``context_ids`` (the stitched
    chunk ids, comma-separated) and ``chunk_range`` (e.g. ``"3-5"``).

    Example:
        >>> from retrievers.context import ContextExpansionRetriever
        >>> r = ContextExpansionRetriever(base=hybrid, store=store, window=1)  # doctest: +SKIP
        >>> r.invoke("termination clause")[0].metadata["chunk_range"]  # doctest: +SKIP
        '6-8'

    Attributes:
        base: the retriever whose hits are expanded.
        store: the ``ChromaStore`` holding the chunks.
        window: chunks added on each side (0 returns the hits unchanged).
        k: return at most this many passages (default: as many as the base returns).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    base: BaseRetriever
    store: Any
    window: int = 1
    k: int | None = None

    def neighbours(self, hit: Document) -> list[Document]:
        """The hit and its neighbours within ``window``, in file order."""
        source, index = hit.metadata.get("source"), hit.metadata.get("chunk_index")
        if self.window < 1 or source is None or not isinstance(index, int):
            return [hit]
        where = {"$and": [{"source": source}, {"chunk_index": {"$gte": index - self.window}},
                          {"chunk_index": {"$lte": index + self.window}}]}
        found = self.store.get(where=where)
        if not found:
            return [hit]
        return sorted(found, key=lambda d: d.metadata.get("chunk_index", 0))

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                k: int | None = None) -> list[Document]:
        """``k`` overrides the attribute for one call (and is passed on to the base)."""
        check_query(query)
        k = self.k if k is None else k
        # Hits inside an earlier hit's window are skipped, so ask the base for spares.
        extra = {"k": k * (1 + 2 * self.window)} if k is not None else {}
        hits = self.base.invoke(query, {"callbacks": run_manager.get_child()}, **extra)
        covered: set[str] = set()
        out = []
        for hit in hits:
            if k is not None and len(out) >= k:
                break
            if hit.id in covered:
                continue
            # Neighbours another hit already brought in are not repeated.
            chunks = [c for c in self.neighbours(hit) if c.id == hit.id or c.id not in covered]
            ids = [c.id for c in chunks]
            covered.update(ids)
            lo = chunks[0].metadata.get("chunk_index", 0)
            hi = chunks[-1].metadata.get("chunk_index", 0)
            meta = {**hit.metadata, "context_ids": ",".join(str(i) for i in ids),
                    "chunk_range": f"{lo}-{hi}"}
            out.append(Document(page_content=stitch(chunks), metadata=meta, id=hit.id))
        return out
