"""``ChromaStore``: the profile's Chroma collection, stamped with the embedder that wrote it.

Embedded (``PersistentClient`` under the profile's data directory) by default, or a Chroma server
(``HttpClient``) when the profile names a host. Telemetry is off. The collection uses cosine distance,
so a hit's relevance is ``1 - distance``. :attr:`ChromaStore.vectorstore` exposes the same collection
as a ``langchain_chroma.Chroma`` for LangChain users.

A collection remembers the identity of its embedder; opening it with another one raises
:class:`~appkit.errors.EmbedderMismatchError` with the command that rebuilds it, instead of the
dimension-mismatch traceback Chroma would give on the first query.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from appkit.config import StoreConfig
from appkit.errors import AppkitError, EmbedderMismatchError
from appkit.lazy import require

EMBEDDER_KEY = "appkit:embedder"

_clients: dict[tuple, Any] = {}
_clients_lock = threading.Lock()


def chroma_client(config: StoreConfig, data_dir: Path) -> Any:
    """One Chroma client per location and process (Chroma wants a single client per path)."""
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    chromadb = require("chromadb", extra="store")
    settings = chromadb.config.Settings(anonymized_telemetry=False, allow_reset=False)
    key = (config.host, config.port) if config.host else (str(Path(data_dir).resolve()),)
    with _clients_lock:
        if key not in _clients:
            if config.host:
                _clients[key] = chromadb.HttpClient(host=config.host, port=config.port,
                                                    settings=settings)
            else:
                path = Path(data_dir) / "chroma"
                path.mkdir(parents=True, exist_ok=True)
                _clients[key] = chromadb.PersistentClient(path=str(path), settings=settings)
        return _clients[key]


class ChromaStore:
    """The chunks of one profile in one Chroma collection.

    Example:
        >>> from appkit.config import StoreConfig
        >>> from appkit.store.chroma import ChromaStore
        >>> from appkit.testing import HashingEmbeddings
        >>> import tempfile
        >>> store = ChromaStore(StoreConfig(), tempfile.mkdtemp(), HashingEmbeddings())
        >>> store.count()
        0

    Args:
        config: the profile's ``[store]`` table.
        data_dir: where an embedded store keeps its files.
        embeddings: the embedder; its ``identity`` (or class name) is stamped on the collection.
    """

    def __init__(self, config: StoreConfig, data_dir: str | Path, embeddings: Embeddings):
        self.config = config
        self.data_dir = Path(data_dir)
        self.embeddings = embeddings
        self._collection: Any = None

    @property
    def embedder_identity(self) -> str:
        return embedder_identity(self.embeddings)

    @property
    def client(self) -> Any:
        return chroma_client(self.config, self.data_dir)

    @property
    def collection(self) -> Any:
        """The Chroma collection (created on first use, checked against the embedder)."""
        if self._collection is None:
            try:
                coll = self.client.get_or_create_collection(
                    name=self.config.collection,
                    metadata={"hnsw:space": "cosine", EMBEDDER_KEY: self.embedder_identity},
                    embedding_function=None,
                )
            except Exception as exc:  # noqa: BLE001 - connection and name errors from chromadb
                raise AppkitError(f"cannot open Chroma collection '{self.config.collection}' "
                                  f"({type(exc).__name__}: {exc})") from exc
            stamped = (coll.metadata or {}).get(EMBEDDER_KEY)
            if stamped and stamped != self.embedder_identity:
                raise EmbedderMismatchError(
                    f"collection '{self.config.collection}' was embedded with '{stamped}', but the "
                    f"profile names '{self.embedder_identity}'. Rebuild it with: appkit ingest "
                    "--reembed (or set embedding.model back to the old model)"
                )
            self._collection = coll
        return self._collection

    @property
    def vectorstore(self) -> Any:
        """The same collection as a ``langchain_chroma.Chroma`` vector store."""
        lc = require("langchain_chroma", extra="store", package="langchain-chroma")
        self.collection  # noqa: B018 - stamp check first
        return lc.Chroma(client=self.client, collection_name=self.config.collection,
                         embedding_function=self.embeddings)

    def count(self) -> int:
        return int(self.collection.count())

    def upsert(self, ids: Sequence[str], texts: Sequence[str], metadatas: Sequence[dict],
               vectors: Any) -> None:
        """Write chunks with precomputed vectors, in batches Chroma accepts."""
        step = max(1, min(5000, int(self.client.get_max_batch_size())))
        for i in range(0, len(ids), step):
            self.collection.upsert(
                ids=list(ids[i:i + step]), documents=list(texts[i:i + step]),
                metadatas=list(metadatas[i:i + step]), embeddings=vectors[i:i + step],
            )

    def delete(self, ids: Sequence[str]) -> None:
        step = 5000
        for i in range(0, len(ids), step):
            self.collection.delete(ids=list(ids[i:i + step]))

    def get(self, ids: Sequence[str] | None = None, where: dict | None = None,
            limit: int | None = None) -> list[Document]:
        """Fetch stored chunks by id or metadata filter."""
        res = self.collection.get(ids=list(ids) if ids is not None else None, where=where,
                                  limit=limit, include=["documents", "metadatas"])
        return [
            Document(page_content=t or "", metadata=dict(m or {}), id=i)
            for i, t, m in zip(res["ids"], res["documents"], res["metadatas"])
        ]

    def search(self, query: str, k: int, where: dict | None = None) -> list[Document]:
        """The ``k`` nearest chunks, each with ``metadata["relevance"]`` = cosine similarity."""
        if self.count() == 0:
            return []
        vector = self.embeddings.embed_query(query)
        res = self.collection.query(query_embeddings=[vector], n_results=k, where=where,
                                    include=["documents", "metadatas", "distances"])
        docs = []
        for i, t, m, d in zip(res["ids"][0], res["documents"][0], res["metadatas"][0],
                              res["distances"][0]):
            meta = dict(m or {})
            meta["relevance"] = round(1.0 - float(d), 6)
            docs.append(Document(page_content=t or "", metadata=meta, id=i))
        return docs

    def drop(self) -> None:
        """Delete the whole collection (``appkit ingest --reembed``)."""
        try:
            self.client.delete_collection(self.config.collection)
        except Exception:  # noqa: BLE001 - absent collection
            pass
        self._collection = None


def embedder_identity(embeddings: Embeddings) -> str:
    """What a collection is stamped with: the embedder's ``identity`` or its class name."""
    return str(getattr(embeddings, "identity", None) or type(embeddings).__name__)
