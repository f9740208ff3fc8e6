"""Errors meant for people: each says what happened, to which file or field, and what to do.

The CLI prints an :class:`AppkitError` as one line and exits non-zero; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations


class AppkitError(Exception):
    """Base class for every error a user can cause and fix."""

    exit_code = 2


class ConfigError(AppkitError):
    """A profile is malformed: names the file, the key and what was expected."""

    def __init__(self, message: str, *, path: str | None = None, key: str | None = None):
        where = ", ".join(p for p in (path and f"file {path}", key and f"key '{key}'") if p)
        super().__init__(f"{where}: {message}" if where else message)
        self.path = path
        self.key = key


class MissingDependencyError(AppkitError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class ModelNotAvailableError(AppkitError):
    """A catalogue model is unknown, or its package is not installed, or its file is corrupt."""


class EmbedderMismatchError(AppkitError):
    """A collection was written by another embedding model than the profile names."""


class IngestError(AppkitError):
    """One file could not be ingested; the ingestion run records it and goes on."""
