"""The task registry: what each task asks the model, what it returns, which models and metric fit.

A :class:`TaskSpec` names a task's prompt family (system message and template, used zero-, one- or
few-shot), the JSON Schema of its result, the model roles it accepts and its default metrics. Metrics
are names only: the core never imports ``eval``, which resolves them (``eval.tasks``).

Example:
    >>> from appkit.tasks.registry import get_task
    >>> spec = get_task("classify")
    >>> spec.metrics
    ('accuracy', 'macro_f1')
    >>> "chat" in spec.roles
    True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from appkit.config import TASKS
from appkit.errors import AppkitError


@dataclass(frozen=True)
class TaskSpec:
    """One task.

    Attributes:
        name: the name ``appkit run`` and the profile's ``task`` use.
        description: one line for ``appkit run --help``.
        system: the system message of every prompt.
        template: the user message; ``{input}`` is the document, other fields come from settings.
        output_schema: JSON Schema of the result the task returns.
        roles: model roles that can serve the task (``chat``, ``completion``, ``seq2seq``,
            ``classifier``, ``token-classifier``).
        metrics: default metric names, resolved by ``eval``.
        runner: ``runner(context, text) -> TaskResult``; set by :mod:`appkit.tasks.runners`.
    """

    name: str
    description: str
    system: str
    template: str
    output_schema: dict[str, Any]
    roles: tuple[str, ...]
    metrics: tuple[str, ...]
    runner: Callable[..., Any] | None = field(default=None, compare=False, repr=False)


_registry: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    """Add or replace a task under ``spec.name``."""
    _registry[spec.name] = spec
    return spec


def task_names() -> list[str]:
    """Registered task names, in the profile's order first."""
    _ensure_builtin()
    return [n for n in TASKS if n in _registry] + sorted(set(_registry) - set(TASKS))


def get_task(name: str) -> TaskSpec:
    """The spec of a registered task.

    Raises:
        AppkitError: naming the known tasks.
    """
    _ensure_builtin()
    if name not in _registry:
        raise AppkitError(f"unknown task '{name}'; known tasks: {', '.join(task_names())}")
    return _registry[name]


def _ensure_builtin() -> None:
    if not _registry:
        from appkit.tasks import runners  # noqa: F401 - registers the built-in tasks
