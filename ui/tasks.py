"""What the Tasks page does, without Streamlit: pick the model, run one task, score it against a
reference.

The model is the one ``appkit run`` would use: the profile's chat model (the cached app's, so the
GGUF is loaded once), or a catalogue name, GGUF path or fine-tuned folder typed on the page.

Example:
    >>> from ui.tasks import parse_reference
    >>> parse_reference("extract", '{"entities": [{"text": "Ada", "type": "PERSON"}]}')
    {'entities': [{'text': 'Ada', 'type': 'PERSON'}]}
    >>> parse_reference("classify", " billing ")
    'billing'
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from appkit.config import Profile
from appkit.errors import AppkitError
from appkit.tasks import TaskInputError, TaskResult, get_task, run_task, task_names

TEXT_TYPES = ["txt", "md", "html", "pdf", "docx", "csv", "json", "jsonl"]


def page_tasks() -> list[str]:
    """Every task but ``qa``, which is the Chat page."""
    return [t for t in task_names() if t != "qa"]


def read_upload(name: str, data: bytes) -> str:
    """The text of an uploaded file, read as ``appkit run --input`` reads files.

    Raises:
        AppkitError: the file cannot be read as text (the message names it).
    """
    from appkit.tasks.cli import read_input

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(name).name
        path.write_bytes(data)
        return read_input(path)


def parse_reference(task: str, text: str) -> Any:
    """A reference typed on the page, in the form the task's metrics compare: a JSON object
    for extract, the label for classify, text otherwise.

    Raises:
        AppkitError: an extract reference that is not a JSON object.
    """
    text = text.strip()
    if task == "extract":
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise AppkitError(f"the reference for extract must be JSON such as "
                              f'{{"entities": [{{"text": "Ada", "type": "PERSON"}}]}}: {exc}') from exc
        if not isinstance(value, dict):
            raise AppkitError("the reference for extract must be a JSON object")
        return value
    return text


def parse_schema(text: str) -> dict[str, Any] | None:
    """A JSON Schema typed on the page (None when empty), checked as ``--schema`` files are.

    Raises:
        TaskInputError: not JSON, or not a valid schema of an object.
    """
    from appkit.tasks import check_schema

    if not text.strip():
        return None
    try:
        return check_schema(json.loads(text), where="the JSON schema")
    except json.JSONDecodeError as exc:
        raise TaskInputError(f"the JSON schema is not JSON: {exc}") from exc


def task_model(profile: Profile, task: str, model: str, default_chat_model: Any) -> Any:
    """The model for ``task``: ``model`` if named, else the profile's (``default_chat_model``
    unless the profile names a fine-tuned folder).

    Raises:
        AppkitError: a model of a role the task does not accept, or one that is not installed.
    """
    from appkit.tasks.cli import folder_role, make_task_model

    if task == "qa":
        return None
    if not model.strip() and folder_role(profile.resolve(profile.chat.model)) is None:
        return default_chat_model
    return make_task_model(profile, get_task(task), model.strip() or None, None)


def run_one(profile: Profile, task: str, text: str, llm: Any, *, labels: str = "",
            source: str = "", target: str = "", schema: str = "", tests: str = "") -> TaskResult:
    """Run ``task`` on ``text`` with the page's options (``labels`` comma-separated).

    Raises:
        TaskInputError, TaskOutputError: as :func:`appkit.tasks.run_task`.
    """
    from appkit.tasks.cli import task_context

    _, ctx = task_context(profile, task, llm=llm,
                          labels=labels.split(",") if labels.strip() else None,
                          source=source or None, target=target or None,
                          schema=parse_schema(schema), tests=tests)
    return run_task(task, text, ctx)


def score_one(task: str, result: TaskResult, reference: Any) -> dict[str, float | None]:
    """The task's metrics on this one result (the judge's rubric is left out: it needs
    ``appkit models compare --judge``)."""
    from eval.tasks import score_task

    prediction: Any = result.output
    if task == "code":
        prediction = {**(result.details.get("tests") or {}), "code": result.output}
        reference = ""
    scores = score_task(task, [prediction], [reference])
    return {k: v for k, v in scores.items() if v is not None}
