"""``App``: one profile's parts wired together, each built on first use.

The CLI, the Streamlit app, the server and the evaluation runner all go through this class, so they
answer the same way. Ingesting never loads the chat model; asking loads it once per process.

Example:
    >>> from appkit.app import App
    >>> app = App.from_profile_file("appkit.toml")  # doctest: +SKIP
    >>> app.ingest(["~/notes"]).added  # doctest: +SKIP
    12
    >>> print(app.ask("What did we decide about the Q3 budget?").text)  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from functools import cached_property
from typing import Any

from langchain_core.embeddings import Embeddings
from langchain_core.language_models import BaseChatModel

from appkit.config import Profile, find_profile
from appkit.ingest.pipeline import IngestReport, Ingestor
from appkit.types import Answer


class App:
    """A profile's models, store, retriever and chain.

    Args:
        profile: the use case.
        embeddings: replace the profile's embedder (tests pass a fake).
        chat_model: replace the profile's chat model (tests pass a fake).
    """

    def __init__(self, profile: Profile, *, embeddings: Embeddings | None = None,
                 chat_model: BaseChatModel | None = None):
        self.profile = profile
        self._embeddings = embeddings
        self._chat_model = chat_model

    @classmethod
    def from_profile_file(cls, path: str | os.PathLike | None = None, **kwargs: Any) -> App:
        """Load the profile (written with defaults if missing) and build an app on it."""
        return cls(find_profile(path), **kwargs)

    @cached_property
    def embeddings(self) -> Embeddings:
        if self._embeddings is not None:
            return self._embeddings
        from appkit.models import make_embeddings

        return make_embeddings(self.profile)

    @cached_property
    def chat_model(self) -> BaseChatModel:
        if self._chat_model is not None:
            return self._chat_model
        from appkit.models import make_chat_model

        return make_chat_model(self.profile)

    @cached_property
    def store(self) -> Any:
        from appkit.store.chroma import ChromaStore

        return ChromaStore(self.profile.store, self.profile.data_dir, self.embeddings)

    @cached_property
    def ingestor(self) -> Ingestor:
        # Building the embedder and the store is cheap: models and Chroma open on first use, so an
        # unchanged re-ingest loads neither.
        return Ingestor(self.profile, embeddings=self.embeddings, store=self.store)

    @cached_property
    def retriever(self) -> Any:
        from appkit.retrieval import RetrieverContext, make_retriever

        return make_retriever(RetrieverContext(self.profile, self.store, lambda: self.chat_model))

    @cached_property
    def chain(self) -> Any:
        from appkit.chains.rag import RagChain

        return RagChain.from_profile(self.profile, self.retriever, self.chat_model)

    def document_paths(self) -> list[str]:
        return [str(self.profile.resolve(p)) for p in self.profile.documents.paths]

    def ingest(self, paths: Sequence[str | os.PathLike] | None = None, **kwargs: Any) -> IngestReport:
        """Ingest ``paths`` (default: the profile's ``documents.paths``)."""
        chosen = list(paths) if paths else self.document_paths()
        if not chosen:
            from appkit.errors import AppkitError

            raise AppkitError("no folder to ingest: pass one (appkit ingest ~/notes) or set "
                              "documents.paths in the profile")
        return self.ingestor.run(chosen, **kwargs)

    def ask(self, question: str, history: Sequence[tuple[str, str]] = ()) -> Answer:
        """Answer one question from the documents."""
        return self.chain.invoke(question, history)

    def stream(self, question: str, history: Sequence[tuple[str, str]] = ()) -> Iterator[str | Answer]:
        """Stream the answer's text, then the :class:`Answer`."""
        return self.chain.stream(question, history)
