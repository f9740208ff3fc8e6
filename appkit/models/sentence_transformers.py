"""``SentenceTransformerEmbeddings``: LangChain embeddings over a local sentence-transformers model.

A thin lazy shell around ``langchain_huggingface.HuggingFaceEmbeddings``: constructing it is free, the
model loads (offline, ``HF_HUB_OFFLINE=1``) on first use, and :attr:`identity` names the model so a
collection can be stamped with what wrote it.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from langchain_core.embeddings import Embeddings

from appkit.lazy import require


class SentenceTransformerEmbeddings(Embeddings):
    """Normalised sentence embeddings from a local model folder (cosine = dot product).

    Example:
        >>> from appkit.models.sentence_transformers import SentenceTransformerEmbeddings
        >>> emb = SentenceTransformerEmbeddings("/path/to/all-MiniLM-L6-v2", name="all-minilm-l6-v2")
        >>> emb.identity  # no model is loaded to answer this
        'all-minilm-l6-v2'

    Args:
        model_path: a folder holding a sentence-transformers model.
        name: the catalogue name, used as the identity stamped on collections.
        batch_size: texts per forward pass.
        max_seq_length: tokens per text; longer texts are truncated by the model.
        device: where the model runs (``cpu``; ``cuda`` in a Ray actor given a GPU). Set it before
            the first use.
    """

    def __init__(self, model_path: str, *, name: str = "", batch_size: int = 64,
                 max_seq_length: int = 256, device: str = "cpu"):
        self.model_path = str(model_path)
        self.name = name or os.path.basename(self.model_path.rstrip("/"))
        self.batch_size = batch_size
        self.max_seq_length = max_seq_length
        self.device = device
        self._inner: Any = None
        self._lock = threading.Lock()

    @property
    def identity(self) -> str:
        """What wrote a collection: changes when the model (or its backend) changes."""
        return self.name

    def warm_up(self) -> Any:
        """Load the model now; returns the ``HuggingFaceEmbeddings`` doing the work."""
        with self._lock:
            if self._inner is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                hf = require("langchain_huggingface", extra="embed")
                from transformers.utils import logging as hf_logging

                hf_logging.disable_progress_bar()  # the per-load weights bar is noise in a CLI
                self._inner = hf.HuggingFaceEmbeddings(
                    model_name=self.model_path,
                    model_kwargs={"device": self.device, "local_files_only": True},
                    encode_kwargs={"normalize_embeddings": True, "batch_size": self.batch_size},
                )
                self._inner._client.max_seq_length = self.max_seq_length
            return self._inner

    @property
    def dimension(self) -> int:
        """Vector size (loads the model)."""
        client = self.warm_up()._client
        get = getattr(client, "get_embedding_dimension", None) or client.get_sentence_embedding_dimension
        return int(get())

    def tokenize(self, texts: list[str]) -> int:
        """Tokenise ``texts`` as :meth:`embed_documents` does, without the model; returns the
        number of tokens (``appkit bench ingest`` times this apart from inference)."""
        client = self.warm_up()._client
        total = 0
        for start in range(0, len(texts), self.batch_size):
            features = client.tokenize(list(texts[start:start + self.batch_size]))
            total += int(features["attention_mask"].sum())
        return total

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed passages; an empty list gives an empty list."""
        if not texts:
            return []
        return self.warm_up().embed_documents(list(texts))

    def embed_query(self, text: str) -> list[float]:
        """Embed one query."""
        return self.warm_up().embed_query(text)
