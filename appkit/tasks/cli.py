"""``appkit run TASK --input FILE``: run one task on one file and print the result.

Registered through the ``appkit.commands`` entry-point group.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from appkit.errors import AppkitError

_TEXT_SUFFIXES = {"", ".txt", ".text", ".log"}


def read_input(path: str | Path) -> str:
    """The text of an input file: any format the ingester reads; a JSON list of chat messages
    (``{"role"|"speaker": ..., "content"|"text": ...}``) becomes a ``speaker: text`` transcript.

    Raises:
        AppkitError: when the file is missing or cannot be read as text.
    """
    from appkit.ingest.loaders import decode_text, loader_for, read_bytes
    from appkit.tasks.runners import TaskInputError

    p = Path(path)
    if not p.is_file():
        raise TaskInputError(f"no such input file: {p}")
    if p.suffix.lower() == ".json":
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise TaskInputError(f"{p} is not JSON: {exc}") from exc
        if isinstance(data, list) and data and all(isinstance(m, dict) for m in data):
            return "\n".join(f"{m.get('speaker') or m.get('role') or 'speaker'}: "
                             f"{m.get('content') or m.get('text') or ''}".strip() for m in data)
    if p.stat().st_size == 0:
        return ""
    loader = None if p.suffix.lower() in _TEXT_SUFFIXES else loader_for(p)
    try:
        if loader is None:
            return decode_text(read_bytes(p))
        return "\n\n".join(d.page_content for d in loader.load(p))
    except AppkitError as exc:
        raise TaskInputError(f"cannot read {p}: {exc}") from exc


def task_context(profile: Any, task: str, *, llm: Any = None, app: Any = None,
                 labels: Sequence[str] | None = None, source: str | None = None,
                 target: str | None = None, shots: str | None = None, examples: str | None = None,
                 schema: dict[str, Any] | None = None, tests: str = "",
                 max_tokens: int | None = None, embeddings: Any = None) -> tuple[Any, Any]:
    """The profile with one run's overrides of its ``[tasks]`` table, and the
    :class:`~appkit.tasks.TaskContext` for ``task``; ``appkit run`` and the server share it.

    Args:
        profile: the :class:`~appkit.config.Profile`.
        task: the task name.
        llm: the model (None: built from the profile's ``chat.model`` for the task).
        app: the :class:`~appkit.app.App` that answers ``qa`` (None: built from the profile).
        labels, source, target, shots, examples: override ``tasks.labels``, ``source_lang``,
            ``target_lang``, ``shots`` and ``examples``.
        schema: a checked JSON Schema for extract.
        tests: the test file's text for code.
        max_tokens: tokens the model may write per call (default ``chat.generation``'s).
        embeddings: chooses worked examples (default: the profile's embedder, when needed).

    Raises:
        TaskInputError: one-/few-shot prompts without an example pool.
    """
    from appkit.tasks.registry import get_task
    from appkit.tasks.runners import TaskContext, TaskInputError
    from appkit.tasks.shots import load_pool

    s = profile.tasks
    changes: dict[str, Any] = {}
    if labels is not None:
        changes["labels"] = tuple(x.strip() for x in labels if x.strip())
    if source:
        changes["source_lang"] = source
    if target:
        changes["target_lang"] = target
    if shots:
        changes["shots"] = shots
    if examples:
        changes["examples"] = examples
    s = dataclasses.replace(s, **changes)
    profile = dataclasses.replace(profile, tasks=s)
    spec = get_task(task)
    pool: list[Any] = []
    if s.examples and s.shots != "zero-shot":
        pool = load_pool(profile.resolve(s.examples))
        if embeddings is None:
            from appkit.models import make_embeddings

            embeddings = make_embeddings(profile)
    elif s.shots != "zero-shot":
        raise TaskInputError(f"{s.shots} prompts need worked examples: set tasks.examples to a "
                             "JSONL file or pass --examples")
    if task == "qa" and app is None:
        from appkit.app import App

        app = App(profile)
    elif task != "qa" and llm is None:
        llm = make_task_model(profile, spec, None, max_tokens)
    return profile, TaskContext(llm=llm, settings=s, embeddings=embeddings, pool=pool,
                                n_ctx=profile.chat.n_ctx,
                                max_tokens=max_tokens or profile.chat.generation.max_tokens,
                                schema=schema, tests=tests, app=app)


def build_context(args: argparse.Namespace, task: str) -> tuple[Any, Any]:
    """The profile (with command-line overrides) and the :class:`TaskContext` for ``task``."""
    from appkit.config import find_profile
    from appkit.tasks.registry import get_task
    from appkit.tasks.runners import TaskInputError, load_schema

    profile = find_profile(args.profile, create=False)
    schema = load_schema(args.schema) if args.schema else None
    tests = ""
    if args.tests:
        try:
            tests = Path(args.tests).read_text(encoding="utf-8")
        except OSError as exc:
            raise TaskInputError(f"cannot read the tests {args.tests}: {exc}") from exc
    app = llm = None
    if task == "qa":
        from appkit.app import App

        app = App.from_profile_file(args.profile)
    else:
        llm = make_task_model(profile, get_task(task), args.model, args.max_tokens)
    return task_context(
        profile, task, llm=llm, app=app,
        labels=args.labels.split(",") if args.labels is not None else None,
        source=args.source, target=args.target, shots=args.shots, examples=args.examples,
        schema=schema, tests=tests, max_tokens=args.max_tokens)


def folder_role(folder: str | Path) -> str | None:
    """The role of a model folder, by the marker file it holds: ``classifier``,
    ``token-classifier``, ``seq2seq``, or None for anything else."""
    from appkit.tasks.encoder import is_classifier_folder
    from appkit.tasks.encoder_tokens import is_token_classifier_folder
    from appkit.tasks.seq2seq import is_seq2seq_folder

    for is_kind, role in ((is_classifier_folder, "classifier"),
                          (is_token_classifier_folder, "token-classifier"),
                          (is_seq2seq_folder, "seq2seq")):
        if is_kind(folder):
            return role
    return None


def make_task_model(profile: Any, spec: Any, model: str | None, max_tokens: int | None) -> Any:
    """The chat model for a task, refusing catalogue models of a role the task does not accept."""
    from appkit.models import make_chat_model
    from appkit.models.catalogue import resolve_model

    name = model or profile.chat.model
    # A folder on the command line is relative to the working directory; in the profile, to it.
    folder = Path(name) if model and Path(name).exists() else profile.resolve(name)
    role = folder_role(folder)
    if role is not None:
        if role not in spec.roles:
            raise AppkitError(f"{name} is a {role} model; {spec.name} accepts "
                              f"{', '.join(spec.roles)} models")
        if role == "seq2seq":
            from appkit.tasks.seq2seq import Seq2SeqModel

            return Seq2SeqModel(folder, max_new_tokens=max_tokens or 128)
        from appkit.tasks.encoder import EncoderClassifier
        from appkit.tasks.encoder_tokens import EncoderTokenClassifier

        return {"classifier": EncoderClassifier,
                "token-classifier": EncoderTokenClassifier}[role](folder)
    if not name.startswith(("http://", "https://")):
        mspec, _ = resolve_model(name)
        if mspec.role not in spec.roles:
            raise AppkitError(f"model '{name}' is a {mspec.role} model; {spec.name} accepts "
                              f"{', '.join(spec.roles)} models")
    overrides = {"max_tokens": max_tokens} if max_tokens else {}
    return make_chat_model(profile, name, **overrides)


def cmd_run(args: argparse.Namespace) -> int:
    from appkit.tasks.runners import run_task

    text = read_input(args.input)
    _, ctx = build_context(args, args.task)
    result = run_task(args.task, text, ctx)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False, default=str))
    else:
        out = result.output
        print(json.dumps(out, indent=2, ensure_ascii=False) if isinstance(out, dict) else out)
        tests = result.details.get("tests")
        if tests:
            verdict = "passed" if tests["passed"] else ("timed out" if tests["timed_out"]
                                                       else "failed")
            print(f"\ntests {verdict} in {tests['seconds']:.1f}s", file=sys.stderr)
            if not tests["passed"]:
                print(tests["output"], file=sys.stderr)
        print(f"({result.calls} model call(s), {result.seconds:.1f}s)", file=sys.stderr)
    tests = result.details.get("tests")
    return 1 if tests and not tests["passed"] else 0


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``appkit run`` to the CLI."""
    from appkit.config import TASKS

    p = subparsers.add_parser("run", parents=[common],
                              help="run a task (summarize, translate, extract, classify, ...) on a file")
    p.add_argument("task", choices=list(TASKS), help="the task")
    p.add_argument("--input", "-i", required=True, help="the input file (text, document or JSON chat)")
    p.add_argument("--model", "-m", help="catalogue name, GGUF path or endpoint (default: the profile's)")
    p.add_argument("--labels", help="classify: comma-separated labels (default: tasks.labels)")
    p.add_argument("--source", help="translate: source language code (default: tasks.source_lang)")
    p.add_argument("--target", help="translate: target language code (default: tasks.target_lang)")
    p.add_argument("--schema", help="extract: a JSON Schema file (default: named entities)")
    p.add_argument("--tests", help="code: a test file that imports the answer from `solution`")
    p.add_argument("--shots", choices=["zero-shot", "one-shot", "few-shot"],
                   help="prompt mode (default: tasks.shots)")
    p.add_argument("--examples", help="JSONL pool of worked examples for one-/few-shot prompts")
    p.add_argument("--max-tokens", type=int, help="tokens the model may write per call")
    p.set_defaults(func=cmd_run)
