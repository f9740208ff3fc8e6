"""Tasks beyond Q&A: summarize, translate, extract, classify, write and code (and qa, the RAG chat).

The registry (:mod:`appkit.tasks.registry`) says what each task prompts, returns, accepts and is
measured by; :func:`run_task` runs one on a text. ``appkit run TASK --input FILE`` is the command line.

Example:
    >>> from appkit.tasks import TaskContext, run_task, task_names
    >>> from appkit.testing import FakeChatModel
    >>> task_names()[:3]
    ['qa', 'summarize', 'translate']
    >>> run_task("summarize", "A long text.", TaskContext(FakeChatModel(replies=["Short."]))).output
    'Short.'
"""

from appkit.tasks.registry import TaskSpec, get_task, register_task, task_names
from appkit.tasks.runners import (
    ENTITY_SCHEMA,
    TaskContext,
    TaskInputError,
    TaskOutputError,
    TaskResult,
    check_schema,
    load_schema,
    parse_json,
    run_task,
)

__all__ = [
    "ENTITY_SCHEMA", "TaskContext", "TaskInputError", "TaskOutputError", "TaskResult", "TaskSpec",
    "check_schema", "get_task", "load_schema", "parse_json", "register_task", "run_task",
    "task_names",
]
