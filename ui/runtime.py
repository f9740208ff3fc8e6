"""What every page shares: the session's profile, the cached :class:`~appkit.app.App`, readiness checks.

Models and stores load once per process: the embedder is cached per ``[embedding]`` settings and
apps per profile content with ``st.cache_resource``; llama.cpp models are shared per file
by :mod:`appkit.models.llama_cpp`. Changing a generation setting builds a new, cheap ``App`` around the
same loaded models, so reruns stay instant.

Pages draw from the profile and the ingestion manifest alone (no LangChain, Chroma or model import),
so the first page appears quickly; :func:`warm_up` then loads the rest in a background thread while the
user reads it.

Tests and demos replace the models with ``APPKIT_UI_APP_FACTORY=module:function``, a callable taking a
:class:`~appkit.config.Profile` and returning an ``App`` (see :func:`ui.testing.fake_app`).

Example:
    >>> from ui.runtime import settings_snapshot
    >>> from appkit.config import Profile
    >>> settings_snapshot(Profile())["chat_model"]
    'qwen2.5-coder-0.5b'
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import streamlit as st

from appkit.config import Profile, find_profile, load_profile
from appkit.errors import AppkitError
from appkit.ingest.manifest import Manifest

if TYPE_CHECKING:
    from appkit.app import App

FACTORY_ENV = "APPKIT_UI_APP_FACTORY"
PROFILE_KEY = "appkit_profile_path"


# --- the profile -----------------------------------------------------------------------------


def default_profile_path() -> str:
    """``$APPKIT_PROFILE`` (set by ``appkit ui --profile``), else ``./appkit.toml``."""
    return str(Path(os.environ.get("APPKIT_PROFILE") or "appkit.toml").resolve())


def profile_path() -> str:
    """The profile this browser session uses (each tab may choose its own on Settings)."""
    if PROFILE_KEY not in st.session_state:
        st.session_state[PROFILE_KEY] = default_profile_path()
    return st.session_state[PROFILE_KEY]


def set_profile_path(path: str) -> None:
    st.session_state[PROFILE_KEY] = str(Path(path).resolve())


@st.cache_resource(show_spinner=False, max_entries=32)
def _load_profile(path: str, mtime_ns: int) -> Profile:
    return load_profile(path)


def current_profile() -> Profile:
    """The session's profile, re-read only when its file changes (written with defaults if missing).

    Raises:
        AppkitError: the file is not a valid profile (the message names the key).
    """
    path = profile_path()
    if not os.path.exists(path):
        find_profile(path)
    return _load_profile(path, os.stat(path).st_mtime_ns)


def profile_candidates() -> list[str]:
    """Profiles to offer on Settings: the current and default ones, ``*.toml`` here and in
    ``./profiles`` and ``./examples/profiles``."""
    found = {profile_path(), default_profile_path()}
    cwd = Path.cwd()
    for folder in (cwd, cwd / "profiles", cwd / "examples" / "profiles"):
        if folder.is_dir():
            found.update(str(p.resolve()) for p in folder.glob("*.toml")
                         if p.name not in ("pyproject.toml",) and not p.name.startswith("."))
    return sorted(found)


def settings_snapshot(profile: Profile) -> dict[str, Any]:
    """The settings that shape an answer, stored with every turn and every feedback record."""
    g = profile.chat.generation
    return {
        "profile": str(profile.source or ""),
        "chat_model": profile.chat.model,
        "embedding_model": profile.embedding.model,
        "retriever": profile.retrieval.retriever,
        "k": profile.retrieval.k,
        "min_relevance": profile.retrieval.min_relevance,
        "prompt_mode": profile.prompt.mode,
        "generation": {"temperature": g.temperature, "top_k": g.top_k, "top_p": g.top_p,
                       "max_tokens": g.max_tokens, "repeat_penalty": g.repeat_penalty,
                       "seed": g.seed},
    }


# --- the app ---------------------------------------------------------------------------------


def _factory() -> Callable[[Profile], App] | None:
    spec = os.environ.get(FACTORY_ENV, "").strip()
    if not spec:
        return None
    module, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), attr or "make_app")
    except (ImportError, AttributeError) as exc:
        raise AppkitError(f"{FACTORY_ENV}={spec} cannot be loaded ({exc}); expected "
                          "'module:function' naming a callable that takes a profile") from exc


def uses_real_models() -> bool:
    """False when a factory (fakes, a demo) replaces the profile's models."""
    return not os.environ.get(FACTORY_ENV, "").strip()


@st.cache_resource(show_spinner=False, max_entries=8)
def _embeddings(embedding_json: str, _profile: Profile) -> Any:
    from appkit.models import make_embeddings

    return make_embeddings(_profile)


@st.cache_resource(show_spinner=False, max_entries=16)
def _app(profile_json: str, _profile: Profile) -> App:
    factory = _factory()
    if factory is not None:
        return factory(_profile)
    from appkit.app import App

    embedding = json.dumps(_profile.to_dict()["embedding"], sort_keys=True)
    return App(_profile, embeddings=_embeddings(embedding, _profile))


def get_app(profile: Profile | None = None) -> App:
    """The cached app for ``profile`` (default: the session's)."""
    profile = profile or current_profile()
    return _app(_key(profile), profile)


def _key(profile: Profile) -> str:
    return json.dumps([os.environ.get(FACTORY_ENV, ""), str(profile.source), profile.to_dict()],
                      sort_keys=True, default=str)


@st.cache_resource(show_spinner=False, max_entries=16)
def manifest_for(data_dir: str) -> Manifest:
    """The ingestion manifest of a data directory: what is in the collection, without opening it."""
    return Manifest(Path(data_dir) / "manifest.sqlite")


def _warm(profile: Profile) -> None:
    try:
        app = get_app(profile)
        app.store.count()
        if uses_real_models():
            app.embeddings.embed_query("warm up")
            warm = getattr(app.chat_model, "warm_up", None)
            if warm is not None:
                warm()
    except Exception:  # noqa: BLE001 - the page that needs the part reports the problem
        pass


@st.cache_resource(show_spinner=False, max_entries=16)
def _warm_up(profile_json: str, _profile: Profile) -> threading.Thread:
    thread = threading.Thread(target=_warm, args=(_profile,), name="appkit-warm-up", daemon=True)
    thread.start()
    return thread


def warm_up(profile: Profile | None = None) -> None:
    """Load the app's store and models in the background, once per profile and process.

    Set ``APPKIT_UI_WARM_UP=0`` to load them on first use instead.
    """
    if os.environ.get("APPKIT_UI_WARM_UP", "1") in ("0", "false", "no"):
        return
    try:
        profile = profile or current_profile()
    except AppkitError:
        return
    _warm_up(_key(profile), profile)


# --- readiness -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """Something that keeps the chat from answering, said for people.

    Attributes:
        level: ``"error"`` (cannot answer) or ``"info"`` (can answer once fixed, e.g. no documents).
        message: what is wrong and what to do.
        page: the page that fixes it (``"documents"``, ``"settings"``), or "".
    """

    level: str
    message: str
    page: str = ""


def _model_problem(name: str, what: str) -> Problem | None:
    if name.startswith(("http://", "https://")):
        return None
    from appkit.models.catalogue import get_spec

    if name.endswith(".gguf") or os.sep in name:
        if not os.path.exists(os.path.expanduser(name)):
            return Problem("error", f"The {what} file {name} does not exist.", "settings")
        return None
    try:
        spec = get_spec(name)
    except AppkitError as exc:
        return Problem("error", f"The {what} is not ready: {exc}", "settings")
    if not spec.installed:
        return Problem("error", f"The {what} '{name}' is not installed. Install it with: "
                                f"{spec.install}", "settings")
    return None


def readiness(profile: Profile, manifest: Any) -> list[Problem]:
    """What stops the chat from answering now (empty when ready). Cheap: reads no model or store."""
    problems: list[Problem] = []
    if uses_real_models():
        remote = ("http://", "https://")
        needed = [("chromadb", "store")]
        if not profile.chat.model.startswith(remote):
            needed.append(("llama_cpp", "chat"))
        if not profile.embedding.model.startswith(remote) and not any(
                importlib.util.find_spec(m) for m in ("sentence_transformers", "onnxruntime")):
            needed.append(("sentence_transformers", "embed"))
        for module, extra in needed:
            if importlib.util.find_spec(module) is None:
                problems.append(Problem("error", f"{module} is not installed. Install it with: "
                                                 f"pip install 'appkit[{extra}]'"))
        for name, what in ((profile.chat.model, "chat model"),
                           (profile.embedding.model, "embedding model")):
            problem = _model_problem(name, what)
            if problem:
                problems.append(problem)
    stamped = manifest.meta("embedder")
    if stamped and uses_real_models() and stamped != profile.embedding.model:
        problems.append(Problem(
            "error", f"The documents were embedded with '{stamped}' but this profile names "
                     f"'{profile.embedding.model}'. Re-embed them (appkit ingest --reembed) or "
                     "set the embedding model back.", "settings"))
    if manifest.count() == 0:
        problems.append(Problem("info", "No documents yet. Add some on the Documents page, then "
                                        "ask about them here.", "documents"))
    return problems
