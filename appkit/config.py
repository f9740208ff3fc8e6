"""The profile: one TOML file (``appkit.toml``) that scopes a use case.

A profile loads into frozen dataclasses; unknown keys and wrong types are rejected with an error that
names the file, the dotted key and what was expected. :meth:`Profile.to_dict` writes it back, so a
profile round-trips through :func:`load_profile` and :func:`save_profile` unchanged.

Example:
    >>> from appkit.config import Profile
    >>> p = Profile()
    >>> p.chat.model
    'qwen2.5-coder-0.5b'
    >>> Profile.from_dict(p.to_dict()) == p
    True
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from appkit.errors import ConfigError

PROFILE_FILENAME = "appkit.toml"
TASKS = ("qa", "summarize", "translate", "extract", "classify", "write", "code")


@dataclass(frozen=True)
class DocumentsConfig:
    """Which files to ingest.

    Attributes:
        paths: folders or files, relative to the profile's folder unless absolute.
        include: glob patterns of files to take (matched against the path relative to its root).
        exclude: glob patterns of files to leave out.
    """

    paths: tuple[str, ...] = ()
    include: tuple[str, ...] = ("**/*",)
    exclude: tuple[str, ...] = ("**/.*", "**/.*/**", "**/__pycache__/**")


@dataclass(frozen=True)
class EmbeddingConfig:
    """The embedding model: a catalogue name or a local sentence-transformers folder."""

    model: str = "all-minilm-l6-v2"
    # Small batches of length-sorted texts pad least: on 2 cores MiniLM ran 22.2 texts/s at 16,
    # 20.5 at 32 and 18.4 at 64 (SQuAD paragraphs).
    batch_size: int = 16
    max_seq_length: int = 256
    # torch: sentence-transformers fp32; onnx-int8: quantized ONNX export (about 2x faster on CPU
    # for -0.002 SciFact nDCG@10); auto (default): onnx-int8 when onnxruntime is installed (the
    # default install has it), else torch. Collections remember which one wrote them.
    backend: Literal["torch", "onnx-int8", "auto"] = "auto"


@dataclass(frozen=True)
class GenerationConfig:
    """Generation settings passed to the chat model on every call."""

    max_tokens: int = 256
    temperature: float = 0.1
    top_k: int = 40
    top_p: float = 0.95
    repeat_penalty: float = 1.1
    stop: tuple[str, ...] = ()
    seed: int = 0


@dataclass(frozen=True)
class ChatConfig:
    """The chat model: a catalogue name, a GGUF path, or an OpenAI-compatible endpoint URL.

    Attributes:
        best_of: answers sampled per question; above 1 the one ``reward_model`` scores highest
            is returned (about n times the generation time; the answer's timings show it).
        reward_model: catalogue name or folder of a reward model (``appkit align reward``).
        best_of_temperature: sampling temperature of the n answers (the profile's own
            ``generation.temperature`` when that is higher).
    """

    model: str = "qwen2.5-coder-0.5b"
    n_ctx: int = 4096
    n_threads: int = 0  # 0: one per physical core
    best_of: int = 1
    reward_model: str = ""
    best_of_temperature: float = 0.7
    generation: GenerationConfig = field(default_factory=GenerationConfig)


@dataclass(frozen=True)
class RetrievalConfig:
    """How chunks are cut and found.

    Attributes:
        retriever: a registered retriever name (``dense`` in the core; the default ``hybrid``
            is dense + BM25 from the ``retrievers`` layer; see benchmarks/RESULTS_retrievers.md).
        k: how many chunks to give the model at most.
        chunk_size: characters per chunk.
        chunk_overlap: characters shared by neighbouring chunks.
        min_relevance: chunks scoring below this (0..1, cosine based) count as not relevant;
            when none is left the answer says the documents do not cover the question.
        condense_history: rewrite follow-up questions into standalone ones before retrieval.
    """

    retriever: str = "hybrid"
    k: int = 4
    chunk_size: int = 1000
    chunk_overlap: int = 200
    min_relevance: float = 0.2
    condense_history: bool = True


@dataclass(frozen=True)
class RetrieversConfig:
    """Settings of the ``retrievers`` layer (hybrid, reranking, query transformation, context).

    Attributes:
        candidates: chunks each first-stage retriever returns before fusion.
        fusion: how ``hybrid`` fuses dense and BM25: ``convex`` (weighted sum of min-max
            normalised scores) or ``rrf`` (weighted reciprocal rank fusion).
        dense_weight: weight of the dense results in the fusion.
        bm25_weight: weight of the BM25 results in the fusion.
        rrf_k: the constant of reciprocal rank fusion (1 / (rrf_k + rank)); ``rrf`` only.
        mmr: diversify dense results with maximal marginal relevance.
        mmr_lambda: 1 is pure relevance, 0 pure diversity.
        first_stage: the retriever that ``rerank``, ``multi-query`` and ``context`` wrap.
        reranker: ``cross-encoder`` or ``llm`` (the chat model ranks a few candidates).
        rerank_model: a catalogue name or folder of a cross-encoder (``appkit retrievers train``).
        rerank_candidates: fused candidates the reranker scores.
        rerank_blend: 0 orders candidates by the reranker alone; above 0 the reranker's order is
            fused (RRF) with the first stage's, which weighs this much.
        query_expansion: ask the chat model for alternative phrasings and fuse their results.
        expansion_queries: how many alternative phrasings.
        context_window: neighbouring chunks added on each side of a hit (0: none).
    """

    # Defaults chosen on a dev split of SciFact train (benchmarks/RESULTS_retrievers.md).
    candidates: int = 50
    fusion: Literal["convex", "rrf"] = "convex"
    dense_weight: float = 0.35
    bm25_weight: float = 0.65
    rrf_k: int = 10
    mmr: bool = False
    mmr_lambda: float = 0.5
    first_stage: str = "hybrid"
    reranker: Literal["cross-encoder", "llm"] = "cross-encoder"
    rerank_model: str = ""
    rerank_candidates: int = 20
    rerank_blend: float = 0.0
    query_expansion: bool = False
    expansion_queries: int = 3
    context_window: int = 0


@dataclass(frozen=True)
class ShotExample:
    """One worked example for one- and few-shot prompts."""

    question: str
    answer: str
    context: str = ""


@dataclass(frozen=True)
class PromptConfig:
    """The prompt template and its mode (zero-, one- or few-shot)."""

    mode: Literal["zero-shot", "one-shot", "few-shot"] = "zero-shot"
    system: str = (
        "You answer questions using only the numbered sources provided. "
        "If the sources do not contain the answer, say that the documents do not say."
    )
    # The citation request sits next to the question: small models follow it there, not in the
    # system message (measured with Qwen2.5-0.5B: citations in 4/4 answers instead of 0/4).
    template: str = (
        "Sources:\n{context}\n\nQuestion: {question}\n"
        "Answer in one or two sentences and cite the source numbers you used, like [1]."
    )
    examples: tuple[ShotExample, ...] = ()


@dataclass(frozen=True)
class StoreConfig:
    """Where vectors live: embedded Chroma under ``path``, or a Chroma server at ``host``."""

    kind: Literal["chroma"] = "chroma"
    path: str = ".appkit"
    collection: str = "documents"
    host: str = ""
    port: int = 8000


@dataclass(frozen=True)
class ToolsConfig:
    """What the agent (``appkit agent``, model ``appkit-agent``) may use.

    Attributes:
        enabled: registered tool names offered to the model.
        http_allow_hosts: the only hosts ``http_json`` may fetch from (exact names, optional
            ``:port``); empty means it fetches nothing.
        http_timeout_s: seconds per HTTP request.
        http_max_bytes: the largest HTTP response read.
        max_steps: model calls per question at most.
        time_limit_s: wall-clock seconds per question at most.
    """

    enabled: tuple[str, ...] = ("search_documents", "calculator", "date_time")
    http_allow_hosts: tuple[str, ...] = ()
    http_timeout_s: float = 10.0
    http_max_bytes: int = 1_000_000
    max_steps: int = 6
    time_limit_s: float = 120.0


@dataclass(frozen=True)
class ServerConfig:
    """``appkit serve``: where it listens and who may call it.

    Attributes:
        host: the address to bind; anything but loopback needs API keys.
        port: the TCP port.
        api_keys: user name to API key (or ``"sha256:<hex digest>"`` of the key); each user gets
            their own document collection. No keys at all: loopback clients only.
        api_keys_env: an environment variable holding more keys as ``user:key,user:key``.
        max_body_bytes: larger request bodies are refused (413).
        rate_limit_per_minute: requests per key per minute (0: no limit).
        workers: server processes; more than one needs a Chroma server (``store.host``).
    """

    host: str = "127.0.0.1"
    port: int = 8080
    api_keys: dict[str, str] = field(default_factory=dict)
    api_keys_env: str = "APPKIT_API_KEYS"
    max_body_bytes: int = 10_485_760
    rate_limit_per_minute: int = 120
    workers: int = 1


@dataclass(frozen=True)
class FinetuneConfig:
    """Settings of the ``finetune`` layer (``appkit finetune train``, ``check``; ``appkit plan``).

    Attributes:
        method: how ``appkit finetune train`` adapts the model and what ``appkit plan`` sizes:
            ``lora``, ``ia3``, ``prompt-tuning``, ``prefix-tuning`` (peft) or ``full``.
        lora_r: the LoRA rank.
        virtual_tokens: soft-prompt length of prompt and prefix tuning.
        eval_set: the questions scored before and after tuning (default: the run's held-out split).
        retain_set: questions of another task, scored to catch forgetting ("" skips the check).
        forgetting_threshold: warn when the retain set's token F1 falls by more points than this.
    """

    method: Literal["lora", "ia3", "prompt-tuning", "prefix-tuning", "full"] = "lora"
    lora_r: int = 8
    virtual_tokens: int = 20
    eval_set: str = ""
    retain_set: str = ""
    forgetting_threshold: float = 2.0


@dataclass(frozen=True)
class TasksConfig:
    """Settings of the tasks beyond Q&A (``appkit run TASK``).

    Attributes:
        labels: the classes ``classify`` chooses from.
        source_lang: the language ``translate`` reads (ISO 639-1 code, e.g. ``en``).
        target_lang: the language ``translate`` writes.
        shots: zero-, one- or few-shot prompts for every task.
        examples: a JSONL pool of worked examples (``{"input": ..., "output": ...}`` per line);
            the most similar ones to each input are put in the prompt.
        shot_count: worked examples in few-shot prompts.
        extract_schema: a JSON Schema file for ``extract`` ("" extracts named entities).
        code_timeout_s: seconds the provided tests of ``code`` may run.
    """

    labels: tuple[str, ...] = ()
    source_lang: str = "en"
    target_lang: str = "fr"
    shots: Literal["zero-shot", "one-shot", "few-shot"] = "zero-shot"
    examples: str = ""
    shot_count: int = 3
    extract_schema: str = ""
    code_timeout_s: float = 10.0


@dataclass(frozen=True)
class Profile:
    """A whole use case: task, documents, models, retrieval, prompts, storage and quality bars.

    Attributes:
        task: one of :data:`TASKS`.
        quality_gate: metric name to a condition such as ``">= 0.7"``, checked by ``appkit eval gate``.
        source: the file this profile was read from, if any (not written back).
    """

    task: str = "qa"
    documents: DocumentsConfig = field(default_factory=DocumentsConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    retrievers: RetrieversConfig = field(default_factory=RetrieversConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    tools: ToolsConfig = field(default_factory=ToolsConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    quality_gate: dict[str, str] = field(default_factory=dict)
    source: Path | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, path: str | os.PathLike | None = None) -> Profile:
        """Build a profile from parsed TOML, rejecting unknown keys and wrong types.

        Raises:
            ConfigError: naming the file, the dotted key and what was expected.
        """
        where = str(path) if path else None
        profile = _build(cls, data, where, prefix="")
        _validate(profile, where)
        return dataclasses.replace(profile, source=Path(path) if path else None)

    def to_dict(self) -> dict[str, Any]:
        """Return plain data that :meth:`from_dict` reads back into an equal profile."""
        return _dump(self)

    @property
    def root(self) -> Path:
        """The folder relative paths in the profile are resolved against."""
        return self.source.parent if self.source else Path.cwd()

    def resolve(self, path: str) -> Path:
        """Resolve a profile path (``~`` expanded, relative to :attr:`root`)."""
        p = Path(os.path.expanduser(path))
        return p if p.is_absolute() else self.root / p

    @property
    def data_dir(self) -> Path:
        """Where the store, manifest and other state of this profile live."""
        return self.resolve(self.store.path)


def load_profile(path: str | os.PathLike) -> Profile:
    """Read a profile from a TOML file.

    Raises:
        ConfigError: when the file is missing, is not TOML, or does not validate.
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such profile; create one with 'appkit config init'", path=str(p))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the profile ({exc})", path=str(p)) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", path=str(p)) from exc
    return Profile.from_dict(data, path=p)


def save_profile(profile: Profile, path: str | os.PathLike) -> Path:
    """Write a profile as TOML, atomically (a crash never leaves half a file)."""
    import tomli_w

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(tomli_w.dumps(profile.to_dict()), encoding="utf-8")
    os.replace(tmp, p)
    return p


def find_profile(explicit: str | os.PathLike | None = None, *, create: bool = True) -> Profile:
    """Find the profile to use: ``explicit``, then ``$APPKIT_PROFILE``, then ``./appkit.toml``.

    When none exists and ``create`` is true, the default profile is written to ``./appkit.toml``
    (or to the explicit path) so the user has a file to edit.
    """
    p = Path(explicit or os.environ.get("APPKIT_PROFILE") or PROFILE_FILENAME)
    if p.exists():
        return load_profile(p)
    if not create:
        return dataclasses.replace(Profile(), source=p.resolve())
    save_profile(Profile(), p)
    return load_profile(p)


# --- building and dumping -------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        return "a list"
    if origin is dict:
        return "a table"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _build(tp: Any, value: Any, path: str | None, prefix: str) -> Any:
    key = prefix or "(top level)"
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"expected a table, got {value!r}", path=path, key=key)
        hints = typing.get_type_hints(tp)
        fields = {f.name: f for f in dataclasses.fields(tp) if f.name != "source"}
        unknown = sorted(set(value) - set(fields))
        if unknown:
            raise ConfigError(
                f"unknown key '{unknown[0]}'; expected one of: {', '.join(sorted(fields))}",
                path=path,
                key=f"{prefix}.{unknown[0]}" if prefix else unknown[0],
            )
        missing = [
            n for n, f in fields.items()
            if n not in value and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ]
        if missing:
            raise ConfigError(
                f"missing key '{missing[0]}' ({_type_name(hints[missing[0]])})",
                path=path, key=f"{prefix}.{missing[0]}" if prefix else missing[0],
            )
        kwargs = {}
        for name in value:
            sub = f"{prefix}.{name}" if prefix else name
            kwargs[name] = _build(hints[name], value[name], path, sub)
        return tp(**kwargs)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"expected {_type_name(tp)}, got {value!r}", path=path, key=key)
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return _build(arg, value, path, prefix)
            except ConfigError:
                continue
        raise ConfigError(f"unexpected value {value!r}", path=path, key=key)
    if origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(f"expected a list, got {value!r}", path=path, key=key)
        return tuple(_build(args[0], v, path, f"{prefix}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"expected a table, got {value!r}", path=path, key=key)
        return {str(k): _build(args[1], v, path, f"{prefix}.{k}") for k, v in value.items()}
    if tp is Path or tp is type(None):
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (str, int, float, bool):
        if isinstance(value, bool) != (tp is bool) or not isinstance(value, tp):
            raise ConfigError(f"expected {_type_name(tp)}, got {value!r}", path=path, key=key)
        return value
    return value


def _dump(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {
            f.name: _dump(getattr(obj, f.name))
            for f in dataclasses.fields(obj)
            if f.name != "source"
        }
    if isinstance(obj, tuple):
        return [_dump(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _dump(v) for k, v in obj.items()}
    return obj


def _validate(p: Profile, path: str | None) -> None:
    def bad(key: str, expected: str, got: Any) -> ConfigError:
        return ConfigError(f"expected {expected}, got {got!r}", path=path, key=key)

    if p.task not in TASKS:
        raise bad("task", "one of " + ", ".join(TASKS), p.task)
    r, g = p.retrieval, p.chat.generation
    if r.k < 1:
        raise bad("retrieval.k", "an integer >= 1", r.k)
    if r.chunk_size < 50:
        raise bad("retrieval.chunk_size", "an integer >= 50", r.chunk_size)
    if not 0 <= r.chunk_overlap < r.chunk_size:
        raise bad("retrieval.chunk_overlap", "0 <= overlap < chunk_size", r.chunk_overlap)
    if not 0.0 <= r.min_relevance <= 1.0:
        raise bad("retrieval.min_relevance", "a number from 0 to 1", r.min_relevance)
    rs = p.retrievers
    for key in ("candidates", "rrf_k", "rerank_candidates", "expansion_queries"):
        if getattr(rs, key) < 1:
            raise bad(f"retrievers.{key}", "an integer >= 1", getattr(rs, key))
    for key in ("dense_weight", "bm25_weight", "rerank_blend"):
        if getattr(rs, key) < 0:
            raise bad(f"retrievers.{key}", "a number >= 0", getattr(rs, key))
    if not 0.0 <= rs.mmr_lambda <= 1.0:
        raise bad("retrievers.mmr_lambda", "a number from 0 to 1", rs.mmr_lambda)
    if rs.context_window < 0:
        raise bad("retrievers.context_window", "an integer >= 0", rs.context_window)
    if g.max_tokens < 1:
        raise bad("chat.generation.max_tokens", "an integer >= 1", g.max_tokens)
    if not 0.0 <= g.temperature <= 5.0:
        raise bad("chat.generation.temperature", "a number from 0 to 5", g.temperature)
    if g.top_k < 0:
        raise bad("chat.generation.top_k", "an integer >= 0", g.top_k)
    if not 0.0 < g.top_p <= 1.0:
        raise bad("chat.generation.top_p", "a number in (0, 1]", g.top_p)
    if p.chat.n_ctx < 256:
        raise bad("chat.n_ctx", "an integer >= 256", p.chat.n_ctx)
    if not 1 <= p.chat.best_of <= 16:
        raise bad("chat.best_of", "an integer from 1 to 16", p.chat.best_of)
    if p.chat.best_of > 1 and not p.chat.reward_model.strip():
        raise bad("chat.reward_model", "a reward model (catalogue name or folder, from 'appkit "
                  "align reward') when chat.best_of > 1", p.chat.reward_model)
    if not 0.0 <= p.chat.best_of_temperature <= 5.0:
        raise bad("chat.best_of_temperature", "a number from 0 to 5", p.chat.best_of_temperature)
    for key in ("lora_r", "virtual_tokens"):
        if getattr(p.finetune, key) < 1:
            raise bad(f"finetune.{key}", "an integer >= 1", getattr(p.finetune, key))
    if p.embedding.batch_size < 1:
        raise bad("embedding.batch_size", "an integer >= 1", p.embedding.batch_size)
    t, s = p.tools, p.server
    if t.max_steps < 1:
        raise bad("tools.max_steps", "an integer >= 1", t.max_steps)
    for key in ("time_limit_s", "http_timeout_s"):
        if getattr(t, key) <= 0:
            raise bad(f"tools.{key}", "a number of seconds > 0", getattr(t, key))
    if t.http_max_bytes < 1:
        raise bad("tools.http_max_bytes", "an integer >= 1", t.http_max_bytes)
    for host in t.http_allow_hosts:
        if not host or any(c in host for c in "/@ ") or host.count(":") > 1:
            raise bad("tools.http_allow_hosts", "host names such as 'api.example.com' or "
                      "'127.0.0.1:8080' (no scheme or path)", host)
    if not 0 < s.port < 65536:
        raise bad("server.port", "a port from 1 to 65535", s.port)
    if s.max_body_bytes < 1024:
        raise bad("server.max_body_bytes", "an integer >= 1024", s.max_body_bytes)
    if s.rate_limit_per_minute < 0:
        raise bad("server.rate_limit_per_minute", "an integer >= 0 (0: no limit)",
                  s.rate_limit_per_minute)
    if s.workers < 1:
        raise bad("server.workers", "an integer >= 1", s.workers)
    for user, key in s.api_keys.items():
        if not (0 < len(user) <= 40 and all(c.isalnum() or c in "_-" for c in user)):
            raise bad(f"server.api_keys.{user}", "a user name of letters, digits, '_' or '-'", user)
        if len(key) < 16:
            raise bad(f"server.api_keys.{user}", "a key of at least 16 characters "
                      "(or 'sha256:<hex digest>')", "<hidden>")
    needed = {"zero-shot": 0, "one-shot": 1, "few-shot": 2}[p.prompt.mode]
    if len(p.prompt.examples) < needed:
        raise bad("prompt.examples", f"at least {needed} example(s) for {p.prompt.mode}",
                  len(p.prompt.examples))
    for field_name in ("{context}", "{question}"):
        if field_name not in p.prompt.template:
            raise bad("prompt.template", f"a template containing {field_name}", p.prompt.template)
    for metric, cond in p.quality_gate.items():
        if not _parse_condition(cond):
            raise bad(f"quality_gate.{metric}", "a condition such as '>= 0.7'", cond)


def _parse_condition(cond: str) -> tuple[str, float] | None:
    """Parse ``">= 0.7"`` into ``(">=", 0.7)``; None when malformed."""
    text = cond.strip()
    for op in (">=", "<=", ">", "<", "=="):
        if text.startswith(op):
            try:
                return op, float(text[len(op):])
            except ValueError:
                return None
    return None


parse_condition = _parse_condition
