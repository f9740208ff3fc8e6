"""Errors of the tasks: what was wrong with the input or the model's reply, and what to do."""

from __future__ import annotations

from appkit.errors import AppkitError


class TaskInputError(AppkitError):
    """The input or the task's settings cannot be used (empty text, bad schema, no labels, ...)."""


class TaskOutputError(AppkitError):
    """The model's output does not fit the task's output schema."""
