"""Instruction data: JSONL rows of (instruction, input, output), task mixtures and held-out splits.

One row per line::

    {"instruction": "Who wrote the report?", "input": "The report was written by Ada.",
     "output": "Ada", "task": "qa"}

``input`` (alias ``context``) is optional, ``task`` defaults to ``qa`` and ``group`` keeps related
rows (one article, one document) on the same side of the held-out split. Rows are built from a
user's eval set (``question``, ``reference``, ``reference_contexts``), from SQuAD v1.1 JSON, from
synthetic questions over ingested documents, or read as they are.

:func:`render_messages` turns a row into the very messages the app sends at inference (a ``qa`` row
with an input becomes the profile's RAG prompt with the input as source ``[1]``), and
:func:`encode_example` renders them with the model's chat template, or as the plain completion
prompt for base models, and masks the prompt out of the loss.

Example:
    >>> from finetune.data import Example, parse_rows, split_heldout
    >>> rows, problems = parse_rows(['{"instruction": "2+2?", "output": "4"}', '{"output": 1}'],
    ...                             source="train.jsonl", on_error="skip")
    >>> rows[0].output, problems[0]
    ('4', "train.jsonl line 2: 'instruction' is missing or empty")
"""

from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from appkit.config import PromptConfig
from appkit.errors import AppkitError

OnError = Literal["skip", "raise"]


class DataError(AppkitError):
    """A data file is missing or malformed, or too small for what was asked; names file and line."""


@dataclass(frozen=True)
class Example:
    """One instruction-tuning row.

    Example:
        >>> from finetune.data import Example
        >>> Example("Capital of France?", "Paris", input="Paris is the capital.").task
        'qa'

    Attributes:
        instruction: the question or instruction.
        output: the target answer.
        input: context the answer should come from ("" when none).
        task: the task name (mixture weights and reports are per task).
        group: rows with the same group stay on one side of the held-out split.
        system: a system text that replaces the profile's for this row.
    """

    instruction: str
    output: str
    input: str = ""
    task: str = "qa"
    group: str = ""
    system: str = ""

    @classmethod
    def from_dict(cls, data: Any) -> Example:
        """Read a row in instruction format or in test-set format (question/reference).

        Raises:
            ValueError: naming the field that is missing or of the wrong type.
        """
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        if "instruction" not in data and "question" in data:
            contexts = data.get("reference_contexts") or data.get("contexts") or []
            if isinstance(contexts, str):
                contexts = [contexts]
            data = {"instruction": data["question"],
                    "output": data.get("reference", data.get("answer", "")),
                    "input": "\n\n".join(str(c) for c in contexts),
                    "task": data.get("task", "qa"), "group": data.get("group", "")}
        values: dict[str, str] = {}
        for name, aliases in (("instruction", ()), ("output", ("response",)),
                              ("input", ("context",)), ("task", ()), ("group", ()),
                              ("system", ())):
            value = data.get(name)
            for alias in aliases:
                if value is None:
                    value = data.get(alias)
            if value is None:
                continue
            if not isinstance(value, str):
                raise ValueError(f"'{name}' must be a string, got {value!r}")
            values[name] = value.strip() if name != "input" else value
        for name in ("instruction", "output"):
            if not values.get(name):
                raise ValueError(f"'{name}' is missing or empty")
        if "task" in values and not values["task"]:
            del values["task"]
        return cls(**values)

    def to_dict(self) -> dict[str, str]:
        return {k: v for k, v in asdict(self).items() if v or k in ("instruction", "output")}


def parse_rows(lines: Iterable[str], *, source: str = "<rows>",
               on_error: OnError = "raise") -> tuple[list[Example], list[str]]:
    """Parse JSONL lines into examples.

    Args:
        lines: the file's lines.
        source: the file name used in messages.
        on_error: ``raise`` stops at the first bad line; ``skip`` collects the problems.

    Returns:
        The examples and, with ``skip``, one message per bad line (``FILE line N: what``).

    Raises:
        DataError: on the first bad line when ``on_error`` is ``raise``.
    """
    rows: list[Example] = []
    problems: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(Example.from_dict(json.loads(line)))
        except json.JSONDecodeError as exc:
            problems.append(f"{source} line {number}: not valid JSON ({exc.msg})")
        except ValueError as exc:
            problems.append(f"{source} line {number}: {exc}")
        if problems and on_error == "raise":
            raise DataError(problems[0] + "; fix the line or pass --skip-bad-rows")
    return rows, problems


def read_rows(path: str | os.PathLike, *, on_error: OnError = "raise") -> tuple[list[Example], list[str]]:
    """Read a JSONL file of rows (see :func:`parse_rows`).

    Raises:
        DataError: the file is missing or unreadable, or (with ``raise``) a line is malformed.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"no such data file: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {p} ({exc})") from exc
    return parse_rows(text.splitlines(), source=str(p), on_error=on_error)


def write_rows(rows: Iterable[Example], path: str | os.PathLike) -> Path:
    """Write rows as JSONL atomically."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text("".join(json.dumps(r.to_dict(), ensure_ascii=False) + "\n" for r in rows),
                   encoding="utf-8")
    os.replace(tmp, p)
    return p


def data_hash(rows: Sequence[Example]) -> str:
    """A short sha256 of the rows, recorded in a tuned model's lineage."""
    digest = hashlib.sha256()
    for r in rows:
        digest.update(json.dumps(r.to_dict(), sort_keys=True, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()[:16]


# --- sources -----------------------------------------------------------------------------------


def from_squad(path: str | os.PathLike, *, articles: Sequence[str] | None = None) -> list[Example]:
    """SQuAD v1.1 JSON as ``qa`` rows: the paragraph is the input, the first answer the output,
    and the article title the group (so a split by group is a split by article)."""
    from eval.testset import iter_squad

    wanted = set(articles) if articles is not None else None
    rows = []
    for title, _, context, qa in iter_squad(path):
        if wanted is not None and title not in wanted:
            continue
        answers = [a["text"] for a in qa.get("answers", []) if a.get("text", "").strip()]
        if answers:
            rows.append(Example(qa["question"].strip(), answers[0].strip(), input=context,
                                task="qa", group=title))
    return rows


SYNTHETIC_PROMPT = (
    "Read the passage and write one question that it answers, and the answer: a short phrase "
    "copied from the passage. Reply with JSON only: {{\"question\": \"...\", \"answer\": \"...\"}}"
    "\n\nPassage:\n{passage}"
)


def synthetic_rows(chunks: Sequence[tuple[str, str]], chat_model: Any, *, limit: int = 0,
                   log: Any = print) -> list[Example]:
    """Ask the chat model for one question and answer per chunk; keep answers found in the chunk.

    Args:
        chunks: ``(source, text)`` pairs, e.g. from the profile's store.
        chat_model: a LangChain chat model.
        limit: stop after this many rows (0: one per chunk).
        log: where progress lines go.
    """
    from langchain_core.messages import HumanMessage

    rows: list[Example] = []
    rejected = 0
    for source, text in chunks:
        if limit and len(rows) >= limit:
            break
        reply = chat_model.invoke([HumanMessage(SYNTHETIC_PROMPT.format(passage=text))]).text
        start, end = reply.find("{"), reply.rfind("}")
        try:
            data = json.loads(reply[start:end + 1]) if start >= 0 else {}
            question, answer = str(data["question"]).strip(), str(data["answer"]).strip()
        except (ValueError, KeyError, TypeError):
            rejected += 1
            continue
        if not question or not answer or answer.lower() not in text.lower():
            rejected += 1
            continue
        rows.append(Example(question, answer, input=text, task="qa", group=source))
    log(f"synthetic Q/A: {len(rows)} kept, {rejected} rejected (unparsable or answer not in passage)")
    return rows


# --- mixtures and splits -----------------------------------------------------------------------


def mix(rows: Sequence[Example], weights: dict[str, float], *, seed: int = 0) -> list[Example]:
    """Resample a multi-task set so each task's share of rows follows ``weights``.

    The total row count is kept; a task below its share is repeated, one above it is subsampled.
    Tasks missing from ``weights`` keep weight 1.

    Raises:
        DataError: a weight names a task with no rows, or is negative.
    """
    by_task: dict[str, list[Example]] = {}
    for r in rows:
        by_task.setdefault(r.task, []).append(r)
    for task, w in weights.items():
        if task not in by_task:
            raise DataError(f"weight given for task '{task}', which has no rows; "
                            f"tasks present: {', '.join(sorted(by_task))}")
        if w < 0:
            raise DataError(f"weight of task '{task}' is {w}; weights must be >= 0")
    w = {t: float(weights.get(t, 1.0)) for t in by_task}
    total_w = sum(w.values()) or 1.0
    rng = random.Random(seed)
    out: list[Example] = []
    for task in sorted(by_task):
        pool = by_task[task]
        n = round(w[task] / total_w * len(rows))
        full, rest = divmod(n, len(pool))
        out += pool * full + rng.sample(pool, rest)
    rng.shuffle(out)
    return out


def split_heldout(rows: Sequence[Example], fraction: float = 0.1, *, seed: int = 0,
                  min_train: int = 1, source: str = "the data") -> tuple[list[Example], list[Example]]:
    """Split rows into train and held-out, per task, keeping each ``group`` on one side.

    Args:
        rows: all rows.
        fraction: the share of groups (rows without a group count alone) held out per task.
        seed: the shuffling seed.
        min_train: the fewest training rows accepted.
        source: how to name the data in errors.

    Raises:
        DataError: too little data for the split (names the counts and what is needed).
    """
    if not 0 < fraction < 1:
        raise DataError(f"the held-out fraction must be between 0 and 1, got {fraction}")
    rng = random.Random(seed)
    train: list[Example] = []
    held: list[Example] = []
    by_task: dict[str, dict[str, list[Example]]] = {}
    for i, r in enumerate(rows):
        by_task.setdefault(r.task, {}).setdefault(r.group or f"\0{i}", []).append(r)
    for task in sorted(by_task):
        groups = list(by_task[task].values())
        rng.shuffle(groups)
        n_held = max(1, round(len(groups) * fraction))
        if len(groups) - n_held < 1:
            raise DataError(
                f"{source}: task '{task}' has {len(groups)} group(s) of rows; a held-out split of "
                f"{fraction:.0%} needs at least 2 (add rows, or lower --heldout)")
        for g in groups[:n_held]:
            held += g
        for g in groups[n_held:]:
            train += g
    if len(train) < min_train:
        raise DataError(f"{source}: {len(train)} training row(s) after the held-out split; "
                        f"at least {min_train} are needed (add rows, or lower --heldout)")
    rng.shuffle(train)
    return train, held


# --- prompts and tokens ------------------------------------------------------------------------


def render_messages(row: Example, prompt: PromptConfig | None = None) -> list[Any]:
    """The messages the app would send for this row (LangChain messages).

    A ``qa`` row with an input goes through the app's own RAG prompt builder, the input being
    source ``[1]``; other rows are the instruction followed by the input.
    """
    from langchain_core.documents import Document
    from langchain_core.messages import HumanMessage, SystemMessage

    from appkit.chains.prompts import answer_messages

    prompt = prompt or PromptConfig()
    if row.task == "qa" and row.input:
        doc = Document(page_content=row.input, metadata={"source": row.group or "context"})
        messages = answer_messages(prompt, row.instruction, [doc])
        if row.system:
            messages[0] = SystemMessage(row.system)
        return messages
    text = row.instruction + (f"\n\n{row.input}" if row.input else "")
    return ([SystemMessage(row.system)] if row.system else []) + [HumanMessage(text)]


@dataclass
class Encoded:
    """Token ids of one example and the labels the loss uses (-100: not trained on)."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


def prompt_text(messages: Sequence[Any], tokenizer: Any, chat_template: bool) -> str:
    """Render messages to the text the model sees before its answer."""
    if chat_template:
        from appkit.models.llama_cpp import _to_openai

        return tokenizer.apply_chat_template([_to_openai(m) for m in messages], tokenize=False,
                                             add_generation_prompt=True)
    from appkit.models.llama_cpp import render_completion_prompt

    return render_completion_prompt(list(messages))


def encode_example(row: Example, tokenizer: Any, *, chat_template: bool, max_tokens: int = 512,
                   prompt: PromptConfig | None = None) -> Encoded:
    """Tokenize a row as prompt + answer, training only on the answer and its end token.

    With a chat template the answer is what the template puts after the generation prompt; for a
    base model it is `` answer`` after the completion prompt's ``Answer:``. Too long a prompt is
    cut from the left, so the question and the answer cue survive.
    """
    messages = render_messages(row, prompt)
    text = prompt_text(messages, tokenizer, chat_template)
    prompt_ids = tokenizer(text, add_special_tokens=not chat_template).input_ids
    answer_ids = tokenizer(" " + row.output if not chat_template else row.output,
                           add_special_tokens=False).input_ids
    answer_ids = answer_ids + [tokenizer.eos_token_id]
    truncated = False
    room = max_tokens - len(answer_ids)
    if room < 8:
        answer_ids = answer_ids[: max_tokens // 2]
        room = max_tokens - len(answer_ids)
        truncated = True
    if len(prompt_ids) > room:
        prompt_ids = prompt_ids[:1] + prompt_ids[len(prompt_ids) - room + 1:]
        truncated = True
    return Encoded(prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids, truncated)
