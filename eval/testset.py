"""Test sets: one JSON object per line, read with line-numbered errors, written atomically.

A line holds a question and, as far as they are known, what a good answer looks like::

    {"id": "q1", "question": "How much is the Q3 budget?", "reference": "40,000 euros",
     "references": ["40k euros"], "reference_contexts": ["The beta budget is forty thousand..."],
     "relevant_ids": ["notes/beta.md"], "task": "qa"}

Only ``question`` is required. ``reference`` is the reference answer (``answer`` is accepted as
an alias); ``references`` are further acceptable answers (SQuAD has up to three); ``relevant_ids``
name the chunks or files that answer the question: a chunk id, a source path, or the end of a
source path without its extension (``beta`` or ``notes/beta`` match ``/docs/notes/beta.md``).

Importers read ragas test sets (``user_input``, ``reference``, ``reference_contexts``), SQuAD v1.1
JSON and BEIR folders (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``).

Example:
    >>> from eval.testset import TestCase, parse_testset
    >>> cases, problems = parse_testset(['{"question": "Who?", "reference": "Ada"}', "{oops"],
    ...                                 on_error="skip")
    >>> cases[0].question, problems[0].line
    ('Who?', 2)
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import random
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from appkit.errors import AppkitError

OnError = Literal["skip", "raise"]


class TestsetError(AppkitError):
    """A test set file is missing or malformed; the message names the file and line."""

    __test__ = False  # not a pytest test class


@dataclass(frozen=True)
class TestCase:
    """One question of a test set and what is known about its answer.

    Example:
        >>> from eval.testset import TestCase
        >>> case = TestCase(question="Capital of France?", reference="Paris")
        >>> case.answers
        ('Paris',)
        >>> TestCase.from_dict(case.to_dict()) == case
        True

    Attributes:
        question: what is asked.
        reference: the reference answer ("" when unknown).
        references: further acceptable answers.
        reference_contexts: passages that support the reference answer.
        relevant_ids: chunk ids or source names that answer the question (for retrieval metrics).
        task: the task type (``qa``, ``summarize``…).
        id: a stable id; derived from the question when not given.
        history: earlier turns as ``[question, answer]`` pairs, for follow-up questions.
        metadata: anything else the file carried (kept and written back).
    """

    __test__ = False  # not a pytest test class

    question: str
    reference: str = ""
    references: tuple[str, ...] = ()
    reference_contexts: tuple[str, ...] = ()
    relevant_ids: tuple[str, ...] = ()
    task: str = "qa"
    id: str = ""
    history: tuple[tuple[str, str], ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.id:
            digest = hashlib.sha256(self.question.encode("utf-8")).hexdigest()[:12]
            object.__setattr__(self, "id", f"q-{digest}")

    @property
    def answers(self) -> tuple[str, ...]:
        """Every acceptable answer, the main reference first, without blanks or repeats."""
        seen: list[str] = []
        for a in (self.reference, *self.references):
            if a and a.strip() and a not in seen:
                seen.append(a)
        return tuple(seen)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TestCase:
        """Build a case from one parsed line.

        Raises:
            ValueError: naming the field that is missing or of the wrong type.
        """
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        data = dict(data)
        question = data.pop("question", None)
        if question is None:
            question = data.pop("user_input", None)
        if not isinstance(question, str) or not question.strip():
            raise ValueError("'question' is missing or empty")
        reference = data.pop("reference", None)
        if reference is None:
            reference = data.pop("answer", "")
        if not isinstance(reference, str):
            raise ValueError(f"'reference' must be a string, got {reference!r}")
        kwargs: dict[str, Any] = {"question": question.strip(), "reference": reference.strip()}
        for name in ("references", "reference_contexts", "relevant_ids"):
            value = data.pop(name, [])
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
                raise ValueError(f"'{name}' must be a list of strings")
            kwargs[name] = tuple(str(v) for v in value)
        for name in ("task", "id"):
            value = data.pop(name, None)
            if value is not None:
                if not isinstance(value, (str, int)):
                    raise ValueError(f"'{name}' must be a string")
                kwargs[name] = str(value)
        history = data.pop("history", [])
        if not isinstance(history, list) or not all(
            isinstance(t, list) and len(t) == 2 and all(isinstance(x, str) for x in t)
            for t in history
        ):
            raise ValueError("'history' must be a list of [question, answer] pairs")
        kwargs["history"] = tuple((q, a) for q, a in history)
        extra = data.pop("metadata", {})
        if not isinstance(extra, dict):
            raise ValueError("'metadata' must be an object")
        kwargs["metadata"] = {**data, **extra}
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("references", "reference_contexts", "relevant_ids"):
            data[name] = list(data[name])
        data["history"] = [list(t) for t in self.history]
        if not data["metadata"]:
            del data["metadata"]
        if not data["history"]:
            del data["history"]
        return data


@dataclass(frozen=True)
class LineProblem:
    """A line of a test set that could not be read."""

    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


def parse_testset(lines: Iterable[str], *, on_error: OnError = "raise",
                  source: str = "<test set>") -> tuple[list[TestCase], list[LineProblem]]:
    """Parse JSON lines into cases.

    Blank lines and lines starting with ``#`` are ignored. Duplicate ids are problems too (the
    runner matches cases across runs by id).

    Args:
        lines: the file's lines.
        on_error: ``"raise"`` stops at the first bad line; ``"skip"`` leaves it out and reports it.
        source: the file name, for messages.

    Returns:
        The cases and the problems found (empty when ``on_error="raise"``).

    Raises:
        TestsetError: on the first bad line when ``on_error="raise"``, naming the file and line.
    """
    cases: list[TestCase] = []
    problems: list[LineProblem] = []
    ids: set[str] = set()
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        try:
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
            case = TestCase.from_dict(data)
            if case.id in ids:
                raise ValueError(f"duplicate id '{case.id}'")
        except ValueError as exc:
            problem = LineProblem(number, str(exc))
            if on_error == "raise":
                raise TestsetError(
                    f"{source}, {problem}. Fix the line, or pass --on-error skip to leave bad "
                    "lines out") from None
            problems.append(problem)
            continue
        ids.add(case.id)
        cases.append(case)
    return cases, problems


def load_testset(path: str | os.PathLike, *, on_error: OnError = "raise"
                 ) -> tuple[list[TestCase], list[LineProblem]]:
    """Read a JSONL test set (see :func:`parse_testset`).

    Raises:
        TestsetError: when the file is missing, unreadable, empty or (with ``on_error="raise"``)
            has a bad line.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TestsetError(f"no such test set: {p}. Make one with 'appkit eval generate' or "
                           "'appkit eval import'") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise TestsetError(f"cannot read the test set {p} ({exc})") from exc
    cases, problems = parse_testset(text.splitlines(), on_error=on_error, source=str(p))
    if not cases:
        raise TestsetError(f"{p} holds no usable test case"
                           + (f" ({len(problems)} bad lines, first: {problems[0]})" if problems else ""))
    return cases, problems


def save_testset(cases: Iterable[TestCase], path: str | os.PathLike) -> Path:
    """Write cases as JSON lines, atomically."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for case in cases:
            fh.write(json.dumps(case.to_dict(), ensure_ascii=False) + "\n")
    os.replace(tmp, p)
    return p


def testset_fingerprint(cases: Iterable[TestCase]) -> str:
    """A short hash of the cases (recorded with each run)."""
    digest = hashlib.sha256()
    for case in cases:
        digest.update(json.dumps(case.to_dict(), sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


# --- importers ---------------------------------------------------------------------------------


def _as_list(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):  # ragas CSV exports write lists as Python/JSON literals
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                import ast

                try:
                    parsed = ast.literal_eval(text)
                except (ValueError, SyntaxError):
                    return [value]
            return [str(v) for v in parsed]
        return [value]
    return [str(v) for v in value]


def from_ragas(path: str | os.PathLike) -> list[TestCase]:
    """Read a ragas test set (``TestsetGenerator`` output saved as JSONL, JSON or CSV).

    Columns used: ``user_input`` (question), ``reference`` (answer), ``reference_contexts`` and
    ``synthesizer_name`` (kept as the task's metadata). Older ragas names (``question``,
    ``ground_truth``, ``contexts``) are accepted too.

    Raises:
        TestsetError: when the file cannot be read or a row has no question.
    """
    p = Path(path)
    try:
        if p.suffix == ".csv":
            with open(p, newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
        elif p.suffix == ".json":
            data = json.loads(p.read_text(encoding="utf-8"))
            rows = data.get("samples", data) if isinstance(data, dict) else data
        else:
            rows = [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines()
                    if line.strip()]
    except (OSError, ValueError) as exc:
        raise TestsetError(f"cannot read the ragas test set {p} ({exc})") from exc
    cases = []
    for i, row in enumerate(rows, 1):
        row = row.get("eval_sample", row) if isinstance(row, dict) else row
        question = row.get("user_input") or row.get("question")
        if not question:
            raise TestsetError(f"{p}, row {i}: no 'user_input' (question)")
        reference = row.get("reference") or row.get("ground_truth") or ""
        contexts = _as_list(row.get("reference_contexts") or row.get("contexts"))
        meta = {"synthesizer": row["synthesizer_name"]} if row.get("synthesizer_name") else {}
        cases.append(TestCase(question=str(question).strip(), reference=str(reference).strip(),
                              reference_contexts=tuple(contexts), metadata=meta))
    return cases


def squad_paragraph_id(title: str, index: int) -> str:
    """The id under which SQuAD paragraph ``index`` of article ``title`` is known: ``title/p007``."""
    return f"{title}/p{index:03d}"


def iter_squad(path: str | os.PathLike) -> Iterator[tuple[str, int, str, dict[str, Any]]]:
    """Yield ``(title, paragraph index, context, qa)`` for every question of a SQuAD v1.1 file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TestsetError(f"cannot read the SQuAD file {path} ({exc})") from exc
    if not isinstance(data, dict) or "data" not in data:
        raise TestsetError(f"{path} is not a SQuAD file: no top-level 'data' list")
    for article in data["data"]:
        for p_index, paragraph in enumerate(article["paragraphs"]):
            for qa in paragraph["qas"]:
                yield article["title"], p_index, paragraph["context"], qa


def from_squad(path: str | os.PathLike, *, sample: int | None = None,
               seed: int = 0) -> list[TestCase]:
    """Read SQuAD v1.1 JSON: each question becomes a case.

    The first answer is the reference and the others are ``references``; the paragraph is the
    reference context and its id (:func:`squad_paragraph_id`) the relevant id, so a corpus
    ingested as one file per paragraph named that way (``<title>/p007.txt``) gets retrieval metrics.

    Args:
        path: the SQuAD JSON file.
        sample: keep this many questions, drawn at random with ``seed`` (None: all).
        seed: the sampling seed.
    """
    cases = []
    for title, p_index, context, qa in iter_squad(path):
        answers = [a["text"] for a in qa.get("answers", [])]
        cases.append(TestCase(
            question=qa["question"].strip(), reference=answers[0] if answers else "",
            references=tuple(dict.fromkeys(answers[1:])), reference_contexts=(context,),
            relevant_ids=(squad_paragraph_id(title, p_index),), id=str(qa["id"]),
            metadata={"title": title, "paragraph": p_index},
        ))
    if sample is not None and sample < len(cases):
        cases = random.Random(seed).sample(cases, sample)
    return cases


def from_beir(folder: str | os.PathLike, *, split: str = "test",
              with_contexts: bool = True) -> list[TestCase]:
    """Read a BEIR folder: each judged query becomes a case whose relevant ids are its qrels.

    BEIR has no reference answers, so these cases feed retrieval metrics (and reference-free ones).

    Args:
        folder: holds ``queries.jsonl``, ``qrels/<split>.tsv`` and (for contexts) ``corpus.jsonl``.
        split: which qrels file.
        with_contexts: copy the relevant documents' text into ``reference_contexts``.
    """
    root = Path(folder)
    qrels_path = root / "qrels" / f"{split}.tsv"
    try:
        queries = {}
        for line in (root / "queries.jsonl").read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                queries[str(row["_id"])] = row["text"]
        qrels: dict[str, list[str]] = {}
        with open(qrels_path, encoding="utf-8") as fh:
            for row in csv.reader(fh, delimiter="\t"):
                if len(row) < 3 or row[0] == "query-id":
                    continue
                if float(row[2]) > 0:
                    qrels.setdefault(row[0], []).append(row[1])
        corpus: dict[str, str] = {}
        if with_contexts:
            wanted = {d for docs in qrels.values() for d in docs}
            for line in (root / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
                if line.strip():
                    row = json.loads(line)
                    if str(row["_id"]) in wanted:
                        corpus[str(row["_id"])] = " ".join(
                            t for t in (row.get("title", ""), row.get("text", "")) if t)
    except (OSError, ValueError, KeyError) as exc:
        raise TestsetError(f"cannot read the BEIR folder {root} ({exc})") from exc
    cases = []
    for qid, docs in qrels.items():
        if qid not in queries:
            continue
        cases.append(TestCase(
            question=queries[qid], relevant_ids=tuple(docs), id=qid,
            reference_contexts=tuple(corpus[d] for d in docs if d in corpus),
        ))
    return cases


IMPORTERS = {"ragas": from_ragas, "squad": from_squad, "beir": from_beir}
