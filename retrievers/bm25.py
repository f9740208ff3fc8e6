"""``BM25Retriever``: keyword search with bm25s over the chunks of the profile's Chroma collection.

The index (:class:`BM25Index`) is derived from the collection: English stopwords removed, words
stemmed with the Snowball stemmer (PyStemmer), built with bm25s and saved under
``<data dir>/bm25/<collection>/`` next to the vector store. Ingestion bumps the manifest's
``generation`` whenever stored chunks change; the index records the generation it was built at and
is rebuilt from the collection's documents when they differ, so added, changed and deleted files are
reflected on the next query. A rebuild re-tokenises every chunk (bm25s has no incremental update):
about 2 s per 10k chunks here.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from appkit.lazy import require
from retrievers.base import check_query, fetch_documents, with_scores
from retrievers.filters import check_where

FORMAT = "bm25s-en-stem-v1"
_PAGE = 5000  # chunks read from Chroma per request while rebuilding


class BM25Index:
    """A bm25s index over a Chroma collection, persisted and kept in step with ingestion.

    Example:
        >>> from retrievers.bm25 import BM25Index
        >>> index = BM25Index(store, "/data/.appkit/bm25/documents", manifest)  # doctest: +SKIP
        >>> index.search("beta blockers heart failure", 10)  # doctest: +SKIP
        [('3b1f...-00002', 7.91), ...]

    Args:
        store: an ``appkit.store.chroma.ChromaStore`` (the source of truth).
        path: the folder the index is saved in.
        manifest: the profile's ``Manifest``; its ``generation`` says when to rebuild. Without one
            the index is rebuilt whenever the collection's chunk count changes.
        k1, b: BM25 parameters (bm25s defaults).
    """

    def __init__(self, store: Any, path: str | os.PathLike, manifest: Any = None, *,
                 k1: float = 1.5, b: float = 0.75):
        self.store = store
        self.path = Path(path)
        self.manifest = manifest
        self.k1, self.b = k1, b
        self._bm25: Any = None
        self._ids: list[str] = []
        self._stamp: dict[str, Any] = {}
        self._stemmer: Any = None
        self._row_of: tuple[list[str], dict[str, int]] | None = None  # (ids it was built from, rows)
        self._lock = threading.RLock()
        self.rebuilds = 0  # how often this object rebuilt the index (tests check it)

    # --- keeping in step -------------------------------------------------------------------------

    def _current_stamp(self) -> dict[str, Any]:
        generation = self.manifest.generation if self.manifest is not None else None
        stamp: dict[str, Any] = {"format": FORMAT, "k1": self.k1, "b": self.b,
                                 "generation": generation}
        if generation is None:
            stamp["count"] = self.store.count()
        return stamp

    def _fresh(self, stamp: dict[str, Any]) -> bool:
        return bool(self._stamp) and all(self._stamp.get(k) == v for k, v in stamp.items())

    def ensure(self) -> None:
        """Load the saved index, or rebuild it when the collection changed since it was built."""
        stamp = self._current_stamp()
        if self._bm25 is not None and self._fresh(stamp):
            return
        with self._lock:
            if self._bm25 is not None and self._fresh(stamp):
                return
            if not self._load(stamp):
                self.rebuild(stamp)

    def _load(self, stamp: dict[str, Any]) -> bool:
        meta_file = self.path / "meta.json"
        try:
            saved = json.loads(meta_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return False
        if not all(saved.get(k) == v for k, v in stamp.items()):
            return False
        ids = json.loads((self.path / "ids.json").read_text(encoding="utf-8"))
        if ids:
            bm25s = require("bm25s", extra="retrievers")
            self._bm25 = bm25s.BM25.load(str(self.path / "index"), show_progress=False)
        else:
            self._bm25 = _EMPTY
        self._ids = ids
        self._stamp = saved
        return True

    def rebuild(self, stamp: dict[str, Any] | None = None) -> None:
        """Re-read every chunk from the collection, index it and save the index atomically."""
        stamp = stamp or self._current_stamp()
        t0 = time.perf_counter()
        ids, texts = [], []
        total = self.store.count()
        for offset in range(0, total, _PAGE):
            res = self.store.collection.get(limit=_PAGE, offset=offset, include=["documents"])
            ids.extend(res["ids"])
            texts.extend(t or "" for t in res["documents"])
        with self._lock:
            if ids:
                bm25s = require("bm25s", extra="retrievers")
                tokens = bm25s.tokenize(texts, stopwords="en", stemmer=self.stemmer,
                                        show_progress=False)
                bm25 = bm25s.BM25(k1=self.k1, b=self.b)
                bm25.index(tokens, show_progress=False)
            else:
                bm25 = _EMPTY
            stamp = {**stamp, "chunks": len(ids), "built_s": round(time.perf_counter() - t0, 3)}
            self._save(bm25, ids, stamp)
            self._bm25, self._ids, self._stamp = bm25, ids, stamp
            self.rebuilds += 1

    def _save(self, bm25: Any, ids: list[str], stamp: dict[str, Any]) -> None:
        # Write a sibling folder, then swap it in: a reader never sees half an index.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if ids:
            bm25.save(str(tmp / "index"), show_progress=False)
        (tmp / "ids.json").write_text(json.dumps(ids), encoding="utf-8")
        (tmp / "meta.json").write_text(json.dumps(stamp), encoding="utf-8")
        old = self.path.with_name(f"{self.path.name}.{os.getpid()}.old")
        if self.path.exists():
            os.replace(self.path, old)
        os.replace(tmp, self.path)
        shutil.rmtree(old, ignore_errors=True)

    # --- searching -------------------------------------------------------------------------------

    @property
    def stemmer(self) -> Any:
        if self._stemmer is None:
            stemmer_mod = require("Stemmer", extra="retrievers", package="PyStemmer")
            self._stemmer = stemmer_mod.Stemmer("english")
        return self._stemmer

    def __len__(self) -> int:
        self.ensure()
        return len(self._ids)

    def query_terms(self, query: str) -> list[str]:
        """The query's stemmed terms that occur in the index (stopwords and unseen words dropped)."""
        bm25s = require("bm25s", extra="retrievers")
        terms = bm25s.tokenize([query], stopwords="en", stemmer=self.stemmer, return_ids=False,
                               show_progress=False)[0]
        vocab = self._bm25.vocab_dict if self._bm25 is not _EMPTY else {}
        return [t for t in terms if t in vocab and t != ""]

    def search(self, query: str, k: int, allowed_ids: set[str] | None = None) -> list[tuple[str, float]]:
        """The ``k`` best (chunk id, BM25 score) pairs; chunks sharing no term are left out.

        Args:
            query: free text.
            k: how many at most.
            allowed_ids: only these chunks may be returned (a metadata filter, resolved by Chroma).
        """
        return self.search_and_score(query, k, allowed_ids)[0]

    def search_and_score(self, query: str, k: int, allowed_ids: set[str] | None = None,
                         ids: Sequence[str] = ()) -> tuple[list[tuple[str, float]], dict[str, float]]:
        """:meth:`search` and :meth:`scores_for` from one scoring pass over the index.

        Convex fusion needs both the BM25 candidates and the BM25 scores of the dense candidates;
        scoring every chunk is the expensive part, so it is done once.

        Returns:
            The ranked (chunk id, score) pairs, and the score of each of ``ids`` the index holds.
        """
        self.ensure()
        with self._lock:
            bm25, all_ids, rows = self._bm25, self._ids, self._rows()
            wanted = [(i, rows[i]) for i in ids if i in rows]
            if not all_ids or (k < 1 and not wanted):
                return [], {}  # nothing asked for: skip scoring every chunk
            terms = self.query_terms(query)
            if not terms:
                return [], {i: 0.0 for i, _ in wanted}
            scores = bm25.get_scores(terms)
        of_ids = {i: float(scores[r]) for i, r in wanted}
        if k < 1:
            return [], of_ids
        if allowed_ids is not None:
            mask = np.fromiter((i in allowed_ids for i in all_ids), dtype=bool, count=len(all_ids))
            scores = np.where(mask, scores, 0.0)
        n = min(k, len(all_ids))
        top = np.argpartition(-scores, n - 1)[:n] if n < len(all_ids) else np.arange(len(all_ids))
        top = top[np.lexsort((top, -scores[top]))]  # best first; ties by index order, stable
        return [(all_ids[int(j)], float(scores[j])) for j in top if scores[j] > 0], of_ids

    def scores_for(self, query: str, ids: Sequence[str]) -> dict[str, float]:
        """The BM25 score of each of ``ids`` for ``query`` (0 for a chunk sharing no term with it).

        Ids the index does not hold (deleted since it was built) are left out. Convex fusion needs
        this for the dense hits that were not among the BM25 candidates.
        """
        return self.search_and_score(query, 0, ids=ids)[1]

    def _rows(self) -> dict[str, int]:
        if self._row_of is None or self._row_of[0] is not self._ids:
            self._row_of = (self._ids, {i: n for n, i in enumerate(self._ids)})
        return self._row_of[1]

    def memory_bytes(self) -> int:
        """Bytes the loaded index holds in numpy arrays (scores, term index, vocabulary excluded)."""
        self.ensure()
        if self._bm25 is _EMPTY:
            return 0
        return int(sum(v.nbytes for v in self._bm25.scores.values() if hasattr(v, "nbytes")))


class _Empty:
    vocab_dict: dict[str, int] = {}


_EMPTY = _Empty()

_indexes: dict[tuple, BM25Index] = {}
_indexes_lock = threading.Lock()


def index_for(store: Any, data_dir: str | os.PathLike) -> BM25Index:
    """The one :class:`BM25Index` per store location in this process (shared by all retrievers)."""
    from appkit.ingest.manifest import Manifest

    data_dir = Path(data_dir)
    name = store.config.collection
    key = (str(data_dir.resolve()), name, store.config.host, store.config.port)
    with _indexes_lock:
        index = _indexes.get(key)
        if index is None or index.store is not store:
            manifest = Manifest(data_dir / "manifest.sqlite")
            index = BM25Index(store, data_dir / "bm25" / name, manifest)
            _indexes[key] = index
        return index


class BM25Retriever(BaseRetriever):
    """Chunks ranked by BM25 (bm25s, English stopwords, Snowball stemming).

    Each document carries ``metadata["score"]`` (the BM25 score) and no ``relevance`` (BM25 knows no
    cosine; see :mod:`retrievers.base`).

    Example:
        >>> from retrievers.bm25 import BM25Retriever, index_for
        >>> r = BM25Retriever(store=store, index=index_for(store, profile.data_dir), k=10)  # doctest: +SKIP
        >>> r.invoke("metformin lactic acidosis")[0].metadata["score"]  # doctest: +SKIP
        12.3

    Attributes:
        store: an ``appkit.store.chroma.ChromaStore`` (texts and metadata come from it).
        index: the :class:`BM25Index` over the same collection.
        k: how many chunks to return.
        where: a Chroma metadata filter; a field no chunk has raises an error.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: Any
    index: Any
    k: int = 4
    where: dict | None = None

    def allowed_ids(self, where: dict | None) -> set[str] | None:
        if not where:
            return None
        check_where(self.store, where)
        res = self.store.collection.get(where=where, include=[])
        return set(res["ids"])

    def ranked_ids(self, query: str, k: int, where: dict | None = None) -> list[tuple[str, float]]:
        """(chunk id, score) pairs without fetching texts (what fusion needs)."""
        return self.index.search(query, k, self.allowed_ids(where))

    def scores_for(self, query: str, ids: Sequence[str]) -> dict[str, float]:
        """BM25 scores of given chunks (see :meth:`BM25Index.scores_for`)."""
        return self.index.scores_for(query, ids)

    def ranked_and_scored(self, query: str, k: int, where: dict | None = None,
                          ids: Sequence[str] = ()) -> tuple[list[tuple[str, float]], dict[str, float]]:
        """:meth:`ranked_ids` and :meth:`scores_for` in one pass (see
        :meth:`BM25Index.search_and_score`)."""
        return self.index.search_and_score(query, k, self.allowed_ids(where), ids)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                k: int | None = None, where: dict | None = None) -> list[Document]:
        """``k`` and ``where`` override the attributes for one call: ``invoke(q, k=3)``."""
        check_query(query)
        k = self.k if k is None else k
        where = self.where if where is None else where
        ranked = self.ranked_ids(query, k, where)
        docs = fetch_documents(self.store, [i for i, _ in ranked])
        return [with_scores(docs[i], score=round(s, 6)) for i, s in ranked if i in docs]
