"""The built-in tasks and :func:`run_task`, which runs one of them on one input text.

Each task builds its prompt from the registry's template (plus worked examples from the pool in
one- and few-shot mode), calls the chat model, and returns a :class:`TaskResult`. Inputs longer than
the model's context are cut into pieces that fit: summarize maps every piece to a summary and
reduces the summaries (again and again while they are still too long), translate translates piece by
piece, extract merges the pieces' results. Extract and classify ask llama.cpp for JSON constrained
by a grammar built from the JSON Schema, so their results always parse.

Example:
    >>> from appkit.config import TasksConfig
    >>> from appkit.tasks import TaskContext, run_task
    >>> from appkit.testing import FakeChatModel
    >>> ctx = TaskContext(FakeChatModel(replies=['{"label": "sports"}']),
    ...                   TasksConfig(labels=("sports", "finance")))
    >>> run_task("classify", "The match ended 2-1.", ctx).output
    'sports'
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from appkit.config import TasksConfig
from appkit.tasks.errors import TaskInputError, TaskOutputError
from appkit.tasks.languages import language_name
from appkit.tasks.registry import TaskSpec, get_task, register_task
from appkit.tasks.shots import Shot, select_shots, shot_count

ENTITY_TYPES = ("PERSON", "ORGANIZATION", "LOCATION", "DATE", "MISC")
ENTITY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "entities": {
            "type": "array",
            "maxItems": 12,
            "items": {
                "type": "object",
                "properties": {
                    "text": {"type": "string", "maxLength": 60},
                    "type": {"type": "string", "enum": list(ENTITY_TYPES)},
                },
                "required": ["text", "type"],
            },
        }
    },
    "required": ["entities"],
}
EXTRACT_MIN_TOKENS = 512
_MAX_ROUNDS = 8  # reduce rounds of map-reduce before giving up on a document


@dataclass
class TaskContext:
    """What a task runs with.

    Example:
        >>> from appkit.config import TasksConfig
        >>> from appkit.testing import FakeChatModel
        >>> TaskContext(FakeChatModel(), TasksConfig(), n_ctx=2048).n_ctx
        2048

    Attributes:
        llm: a LangChain chat model (the profile's, or a fake in tests).
        settings: the profile's ``[tasks]`` table.
        embeddings: chooses similar worked examples from ``pool`` (None: the pool's order).
        pool: worked examples for one- and few-shot prompts.
        n_ctx: the model's context length in tokens.
        max_tokens: tokens the model may write per call.
        schema: the JSON Schema for extract (None: named entities, or ``settings.extract_schema``).
        tests: the test file's text for code.
        app: the :class:`~appkit.app.App` that answers qa.
    """

    llm: Any
    settings: TasksConfig = field(default_factory=TasksConfig)
    embeddings: Any = None
    pool: Sequence[Shot] = ()
    n_ctx: int = 4096
    max_tokens: int = 256
    schema: dict[str, Any] | None = None
    tests: str = ""
    app: Any = None


@dataclass(frozen=True)
class TaskResult:
    """One task's result.

    Attributes:
        task: the task name.
        output: the result: text, a label, a JSON object (extract) or the code (code).
        text: the model's last raw reply.
        calls: model calls made (more than one for long inputs).
        seconds: wall-clock time.
        details: task-specific facts (pieces of a long input, the test run of code, ...).
    """

    task: str
    output: Any
    text: str
    calls: int
    seconds: float
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_task(name: str, text: str, context: TaskContext) -> TaskResult:
    """Run task ``name`` on ``text``.

    Raises:
        TaskInputError: for an empty input or unusable settings.
        TaskOutputError: when the model's reply does not fit the output schema.
    """
    spec = get_task(name)
    if not text or not text.strip():
        raise TaskInputError(f"the input for '{name}' is empty; give a file with some text")
    start = time.perf_counter()
    run = _Run(spec, context)
    output, details = spec.runner(run, text)
    return TaskResult(task=name, output=output, text=run.last, calls=run.calls,
                      seconds=round(time.perf_counter() - start, 3), details=details)


# --- shared machinery --------------------------------------------------------------------------


class _Run:
    """One task run: prompts, token budget, calls."""

    def __init__(self, spec: TaskSpec, ctx: TaskContext):
        self.spec, self.ctx = spec, ctx
        self.calls = 0
        self.last = ""
        self.reply_tokens = ctx.max_tokens

    def count(self, text: str) -> int:
        try:
            return int(self.ctx.llm.get_num_tokens(text))
        except Exception:  # noqa: BLE001 - models without a tokenizer: about 4 characters a token
            return max(1, len(text) // 4)

    @property
    def seq2seq(self) -> bool:
        return getattr(self.ctx.llm, "role", "") == "seq2seq"

    def messages(self, text: str, template: str | None = None, **fields: Any) -> list[BaseMessage]:
        template = template or self.spec.template
        s = self.ctx.settings
        k = shot_count(s.shots, s.shot_count)
        out: list[BaseMessage] = [SystemMessage(self.spec.system.format(**fields))]
        for shot in select_shots(list(self.ctx.pool), text, k, self.ctx.embeddings):
            out += [HumanMessage(template.format(input=shot.input, **fields)),
                    AIMessage(shot.output)]
        out.append(HumanMessage(template.format(input=text, **fields)))
        return out

    def budget(self, template: str | None = None, **fields: Any) -> int:
        """Tokens left for the input once the prompt, examples and the reply are counted."""
        if self.seq2seq:  # the encoder reads the input alone; the reply has its own budget
            return self.ctx.llm.n_ctx - 16
        overhead = sum(self.count(m.text) + 8 for m in self.messages("", template, **fields))
        left = self.ctx.n_ctx - self.reply_tokens - overhead - 16
        if left < 32:
            raise TaskInputError(
                f"the prompt of '{self.spec.name}' leaves no room for the input in a context of "
                f"{self.ctx.n_ctx} tokens; use fewer worked examples or a smaller max_tokens")
        return left

    def split(self, text: str, budget: int) -> list[str]:
        if self.count(text) <= budget:
            return [text]
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        splitter = RecursiveCharacterTextSplitter(
            chunk_size=budget, chunk_overlap=min(64, budget // 8), length_function=self.count)
        return [p for p in splitter.split_text(text) if p.strip()]

    def ask(self, text: str, template: str | None = None, *, constrain: dict | None = None,
            **fields: Any) -> str:
        if self.seq2seq:
            if self.spec.name not in ("summarize", "translate"):
                raise TaskInputError(f"seq2seq models serve summarize and translate, not "
                                     f"{self.spec.name}")
            self.calls += 1
            self.last = self.ctx.llm.generate(self.ctx.llm.prefix(self.spec.name, **fields) + text)
            return self.last.strip()
        kwargs = _constrained_kwargs(self.ctx.llm, constrain) if constrain else {}
        if self.reply_tokens != self.ctx.max_tokens:
            kwargs["max_tokens"] = self.reply_tokens
        reply = self.ctx.llm.invoke(self.messages(text, template, **fields), **kwargs)
        self.calls += 1
        self.last = reply.text if hasattr(reply, "text") else str(reply)
        if callable(self.last):  # langchain-core < 1 has .text() as a method
            self.last = reply.content
        return self.last.strip()


def _constrained_kwargs(llm: Any, schema: dict) -> dict[str, Any]:
    """Grammar-constrained JSON for llama.cpp models; other models are asked in the prompt only."""
    from appkit.models.llama_cpp import LlamaCppChatModel

    if not isinstance(llm, LlamaCppChatModel):
        return {}
    return {"response_format": {"type": "json_object", "schema": schema}}


def check_schema(schema: Any, *, where: str = "the JSON schema") -> dict[str, Any]:
    """Check that ``schema`` is a valid JSON Schema describing an object; return it.

    Raises:
        TaskInputError: saying what is wrong and where.
    """
    from appkit.lazy import require

    jsonschema = require("jsonschema", extra="tasks")
    if not isinstance(schema, dict):
        raise TaskInputError(f"{where} must be a JSON object, got {type(schema).__name__}")
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        path = "/".join(str(p) for p in exc.path) or "(top level)"
        raise TaskInputError(f"{where} is not a valid JSON Schema at {path}: {exc.message}") from exc
    if schema.get("type") != "object":
        raise TaskInputError(f"{where} must describe an object (\"type\": \"object\"), "
                             f"got type {schema.get('type')!r}")
    try:
        from llama_cpp.llama_grammar import json_schema_to_gbnf
    except ImportError:
        return schema
    try:
        json_schema_to_gbnf(json.dumps(schema))
    except Exception as exc:  # noqa: BLE001 - the converter raises bare exceptions
        raise TaskInputError(f"{where} uses something llama.cpp cannot turn into a grammar: "
                             f"{exc}") from exc
    return schema


def load_schema(path: str | Path) -> dict[str, Any]:
    """Read and check a JSON Schema file.

    Raises:
        TaskInputError: when the file is missing, not JSON, or not a valid schema.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise TaskInputError(f"cannot read the JSON schema {p}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise TaskInputError(f"the JSON schema {p} is not JSON: {exc}") from exc
    return check_schema(data, where=f"the JSON schema {p}")


def parse_json(text: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Parse a reply as JSON and validate it against ``schema``.

    Raises:
        TaskOutputError: quoting the start of the reply.
    """
    import jsonschema

    cleaned = re.sub(r"^```(?:json)?\s*|\s*```$", "", text.strip())
    try:
        data = json.loads(cleaned)
        jsonschema.validate(data, schema)
    except (json.JSONDecodeError, jsonschema.ValidationError) as exc:
        reason = exc.msg if isinstance(exc, json.JSONDecodeError) else exc.message
        raise TaskOutputError(
            f"the model's reply does not fit the output schema ({reason}): {text[:200]!r}; "
            "grammar-constrained JSON needs a llama.cpp model") from exc
    return data


def _merge(a: Any, b: Any) -> Any:
    """Combine the results of two pieces of one document: lists joined without repeats."""
    if isinstance(a, dict) and isinstance(b, dict):
        return {k: _merge(a[k], b[k]) if k in a and k in b else a.get(k, b.get(k))
                for k in dict.fromkeys([*a, *b])}
    if isinstance(a, list) and isinstance(b, list):
        out = list(a)
        out += [x for x in b if x not in out]
        return out
    return a if a not in (None, "", [], {}) else b


# --- the tasks -----------------------------------------------------------------------------------


def _summarize(run: _Run, text: str) -> tuple[str, dict]:
    transcript = _looks_like_transcript(text)
    kind = "chat transcript" if transcript else "document"
    budget = run.budget(kind=kind)
    pieces = run.split(text, budget)
    if len(pieces) == 1:
        return run.ask(text, kind=kind), {"pieces": 1, "rounds": 0, "transcript": transcript}
    rounds = 0
    while len(pieces) > 1:
        rounds += 1
        if rounds > _MAX_ROUNDS:
            raise TaskInputError(f"the document is still too long after {_MAX_ROUNDS} rounds of "
                                 "summarizing; raise chat.n_ctx or split the file")
        before = sum(run.count(p) for p in pieces)
        partial = [run.ask(p, kind=f"part of a {kind}") for p in pieces]
        joined = "\n\n".join(partial)
        if run.count(joined) >= before:
            raise TaskInputError("the partial summaries are not shorter than the text they "
                                 "summarize; lower max_tokens or raise chat.n_ctx")
        pieces = run.split(joined, run.budget(REDUCE_TEMPLATE, kind=kind))
    summary = run.ask(pieces[0], REDUCE_TEMPLATE, kind=kind)
    return summary, {"pieces": len(run.split(text, budget)), "rounds": rounds,
                     "transcript": transcript}


REDUCE_TEMPLATE = ("These are summaries of consecutive parts of one {kind}:\n\n{input}\n\n"
                   "Combine them into one short summary of the whole {kind}.")


def _looks_like_transcript(text: str) -> bool:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    speaker = re.compile(r"^\s*[\w .'-]{1,30}:\s+\S")
    return len(lines) >= 2 and sum(bool(speaker.match(ln)) for ln in lines) >= 0.6 * len(lines)


def _translate(run: _Run, text: str) -> tuple[str, dict]:
    s = run.ctx.settings
    source = language_name(s.source_lang, field="source language")
    target = language_name(s.target_lang, field="target language")
    if source == target:
        raise TaskInputError(f"source and target language are both '{s.source_lang}'")
    fields = {"source": source, "target": target}
    pieces = run.split(text, run.budget(**fields) // 2)  # the translation is about as long
    out = [run.ask(p, **fields) for p in pieces]
    return "\n\n".join(out), {"pieces": len(pieces), "source": s.source_lang,
                              "target": s.target_lang}


def _extract(run: _Run, text: str) -> tuple[dict, dict]:
    ctx = run.ctx
    if getattr(ctx.llm, "role", "") == "token-classifier":  # a fine-tuned encoder: no prompt
        if ctx.schema is not None or ctx.settings.extract_schema:
            raise TaskInputError("a token classifier extracts named entities only; a JSON schema "
                                 "(--schema, tasks.extract_schema) needs a chat model")
        result = ctx.llm.predict([text])[0]
        run.calls += 1
        run.last = json.dumps(result, ensure_ascii=False)
        return result, {"pieces": 1, "named_entities": True, "encoder": True,
                        "labels": list(ctx.llm.labels)}
    schema = ctx.schema
    if schema is None and ctx.settings.extract_schema:
        schema = load_schema(ctx.settings.extract_schema)
    elif schema is not None:
        schema = check_schema(schema)
    named_entities = schema is None
    schema = schema or ENTITY_SCHEMA
    # JSON cut off by the token limit cannot parse: give extract room for a whole object.
    run.reply_tokens = max(ctx.max_tokens, EXTRACT_MIN_TOKENS)
    fields = {"schema": json.dumps(schema, ensure_ascii=False)}
    pieces = run.split(text, run.budget(**fields))
    result: Any = None
    for piece in pieces:
        try:
            data = parse_json(run.ask(piece, constrain=schema, **fields), schema)
        except TaskOutputError:
            # Grammar-constrained JSON fails to parse only when the token limit cuts it off
            # (seen once in 10 with SmolLM2-135M at 512 tokens): try once more with twice the room.
            run.reply_tokens *= 2
            data = parse_json(run.ask(piece, constrain=schema, **fields), schema)
        result = data if result is None else _merge(result, data)
    if named_entities:
        result["entities"] = [e for i, e in enumerate(result["entities"])
                              if e not in result["entities"][:i]]
    return result, {"pieces": len(pieces), "named_entities": named_entities}


def _classify(run: _Run, text: str) -> tuple[str, dict]:
    if getattr(run.ctx.llm, "role", "") == "classifier":  # a fine-tuned encoder: no prompt
        label = run.ctx.llm.predict([text])[0]
        run.calls += 1
        run.last = label
        return label, {"labels": list(run.ctx.llm.labels), "encoder": True}
    labels = [lb.strip() for lb in run.ctx.settings.labels if lb.strip()]
    if not labels:
        raise TaskInputError("classify needs labels: set tasks.labels in the profile "
                             "(e.g. labels = [\"billing\", \"bug\"]) or pass --labels")
    if len(set(labels)) != len(labels):
        raise TaskInputError(f"the labels repeat: {labels}")
    schema = {"type": "object", "properties": {"label": {"type": "string", "enum": labels}},
              "required": ["label"]}
    fields = {"labels": ", ".join(labels)}
    budget = run.budget(**fields)
    piece = run.split(text, budget)[0]  # the start of a long text is enough to classify it
    reply = run.ask(piece, constrain=schema, **fields)
    return _label_from(reply, labels), {"labels": labels, "truncated": piece != text}


def _label_from(reply: str, labels: Sequence[str]) -> str:
    try:
        data = json.loads(reply)
        if isinstance(data, dict) and data.get("label") in labels:
            return data["label"]
    except json.JSONDecodeError:
        pass
    low = reply.lower()
    hits = [lb for lb in labels if re.search(rf"\b{re.escape(lb.lower())}\b", low)]
    if len(hits) == 1:
        return hits[0]
    raise TaskOutputError(f"the model's reply names {'no' if not hits else 'more than one'} "
                          f"label of {list(labels)}: {reply[:200]!r}")


def _write(run: _Run, text: str) -> tuple[str, dict]:
    piece = run.split(text, run.budget())
    if len(piece) > 1:
        raise TaskInputError("the writing brief is longer than the model's context; shorten it "
                             "or summarize the material first (appkit run summarize)")
    return run.ask(text), {}


def extract_code(reply: str) -> str:
    """The first fenced code block of a reply (the whole reply when there is none)."""
    m = re.search(r"```(?:python|py)?\s*\n(.*?)```", reply, re.S)
    return (m.group(1) if m else reply).strip() + "\n"


def _code(run: _Run, text: str) -> tuple[str, dict]:
    from appkit.tasks.sandbox import run_tests

    tests = run.ctx.tests
    fields = {"tests": tests or "(none given)"}
    if len(run.split(text, run.budget(**fields))) > 1:
        raise TaskInputError("the coding task and its tests are longer than the model's context")
    code = extract_code(run.ask(text, **fields))
    details: dict[str, Any] = {}
    if tests.strip():
        details["tests"] = run_tests(code, tests, timeout_s=run.ctx.settings.code_timeout_s).to_dict()
    return code, details


def _qa(run: _Run, text: str) -> tuple[str, dict]:
    if run.ctx.app is None:
        raise TaskInputError("qa answers from the ingested documents and needs an App "
                             "(appkit run qa does this; in code pass TaskContext(app=...))")
    answer = run.ctx.app.ask(text.strip())
    run.calls += 1
    run.last = answer.text
    return answer.text, {"citations": [c.label for c in answer.cited], "found": answer.found}


# --- registration ----------------------------------------------------------------------------

_TEXT = {"type": "string"}

register_task(TaskSpec(
    name="qa", description="answer a question from the ingested documents, with citations",
    system="", template="{input}", output_schema=_TEXT, roles=("chat", "completion"),
    metrics=("exact_match", "token_f1", "faithfulness"), runner=_qa))
register_task(TaskSpec(
    name="summarize",
    description="summarize a document or a chat transcript (map-reduce for long inputs)",
    system="You write short, faithful summaries. Use only facts from the text.",
    template="Summarize this {kind} in a few sentences.\n\n{input}",
    output_schema=_TEXT, roles=("chat", "completion", "seq2seq"),
    metrics=("rouge1", "rouge2", "rougeL"), runner=_summarize))
register_task(TaskSpec(
    name="translate", description="translate from tasks.source_lang to tasks.target_lang",
    system="You are a translator from {source} to {target}. Reply with the translation only.",
    template="Translate this {source} text into {target}:\n\n{input}",
    output_schema=_TEXT, roles=("chat", "seq2seq"), metrics=("bleu", "chrf"), runner=_translate))
register_task(TaskSpec(
    name="extract",
    description="named entities, or the fields of a JSON schema, as JSON that always parses",
    system=("You extract information from text into JSON that follows this JSON Schema:\n{schema}\n"
            "Copy values exactly as they appear in the text. Reply with the JSON only."),
    template="Text:\n{input}",
    output_schema={"type": "object"}, roles=("chat", "completion", "token-classifier"),
    metrics=("entity_f1", "entity_precision", "entity_recall", "parse_rate"), runner=_extract))
register_task(TaskSpec(
    name="classify", description="choose one of the labels in tasks.labels",
    system=("You classify texts. The possible labels are: {labels}. "
            'Reply with JSON: {{"label": "<one of the labels>"}}.'),
    template="Text:\n{input}",
    output_schema={"type": "string"}, roles=("chat", "completion", "classifier"),
    metrics=("accuracy", "macro_f1"), runner=_classify))
register_task(TaskSpec(
    name="write", description="write a text from a brief (an email, a paragraph, notes)",
    system="You are a careful writer. Follow the brief exactly and keep it concise.",
    template="{input}", output_schema=_TEXT, roles=("chat",),
    metrics=("rubric",), runner=_write))
register_task(TaskSpec(
    name="code", description="write Python code; provided tests run in a sandboxed subprocess",
    system=("You write correct, simple Python. Reply with one ```python code block holding the "
            "whole module; the tests import it as `solution`."),
    template="{input}\n\nThese tests must pass:\n```python\n{tests}\n```",
    output_schema=_TEXT, roles=("chat",), metrics=("tests_pass", "rubric"), runner=_code))
