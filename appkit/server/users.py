"""One :class:`~appkit.app.App` per user, each over its own document collection.

The user of a key gets the collection ``<store.collection>-<user>-<hash>``, the data directory
``<data dir>/users/<user>-<hash>`` (manifest, uploads; with embedded Chroma, the vectors too) and
its ``uploads`` folder as the only document folder, so one user's documents are never retrieved
(or read by a tool) for another. Without keys the single ``local`` user is the
profile itself: what ``appkit ingest`` wrote is what the server searches. Every user's app shares
one embedder and one loaded GGUF (with its lock).

Example:
    >>> from appkit.config import Profile
    >>> from appkit.server.users import user_profile
    >>> user_profile(Profile(), "alice").store.collection
    'documents-alice-2bd806c9'
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from appkit.app import App
from appkit.config import Profile
from appkit.server.auth import LOCAL_USER


def user_profile(profile: Profile, user: str) -> Profile:
    """The profile ``user`` works in (``local``: the profile itself)."""
    if user == LOCAL_USER:
        return profile
    slug = re.sub(r"[^A-Za-z0-9_-]", "", user)[:40] or "user"
    tag = hashlib.sha256(user.encode("utf-8")).hexdigest()[:8]
    folder = profile.data_dir / "users" / f"{slug}-{tag}"
    store = dataclasses.replace(profile.store, collection=f"{profile.store.collection}-{slug}-{tag}",
                                path=str(folder))
    # The user's document folder is their uploads: read_document reads nothing else.
    documents = dataclasses.replace(profile.documents, paths=(str(folder / "uploads"),))
    return dataclasses.replace(profile, store=store, documents=documents)


class UserApps:
    """The apps of the server's users, built on first request and kept.

    Args:
        profile: the server's profile.
        embeddings: one embedder for all users (default: the profile's).
        chat_model: one chat model for all users (default: the profile's).
    """

    def __init__(self, profile: Profile, *, embeddings: Any = None, chat_model: Any = None):
        self.profile = profile
        self._embeddings = embeddings
        self._chat_model = chat_model
        self._apps: dict[str, App] = {}
        self._lock = threading.Lock()

    @property
    def embeddings(self) -> Any:
        with self._lock:
            if self._embeddings is None:
                from appkit.models import make_embeddings

                self._embeddings = make_embeddings(self.profile)
            return self._embeddings

    def get(self, user: str) -> App:
        """The app of ``user``."""
        with self._lock:
            app = self._apps.get(user)
        if app is None:
            # Without an injected chat model each app builds its own, which is cheap: every
            # LlamaCppChatModel naming the same GGUF shares one loaded model and its lock.
            app = App(user_profile(self.profile, user), embeddings=self.embeddings,
                      chat_model=self._chat_model)
            with self._lock:
                app = self._apps.setdefault(user, app)
        return app

    def upload_dir(self, user: str) -> Path:
        """Where the files a user sends to ``/ingest`` are kept."""
        p = user_profile(self.profile, user)
        folder = p.resolve(p.documents.paths[0]) if user != LOCAL_USER else p.data_dir / "uploads"
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    @contextlib.contextmanager
    def ingest_lock(self, user: str) -> Iterator[None]:
        """Hold the user's ingestion lock (a file lock: it also excludes other worker processes)."""
        path = user_profile(self.profile, user).data_dir / "ingest.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
