"""``create_app``: appkit as an OpenAI-compatible HTTP server (FastAPI, run by uvicorn).

Endpoints:

- ``POST /v1/chat/completions``: model ``appkit-rag`` answers from the caller's documents (the same
  chain as ``appkit ask``; citations in the extra ``appkit`` field), ``appkit-agent`` answers with
  the profile's tools (trace in ``appkit.steps``), and an installed catalogue chat model by name
  answers the messages as they are (OpenAI ``tools`` in, ``tool_calls`` out).
  ``"stream": true`` streams server-sent events as OpenAI does.
- ``GET /v1/models``, ``POST /v1/embeddings`` (the profile's embedder; ``float`` or ``base64``).
- ``POST /ingest`` (files in the body, into the caller's collection), ``POST /search``,
  ``GET /health`` (no key needed).
- ``GET /v1/tasks`` lists the tasks of ``appkit run``; ``POST /v1/tasks/{task}`` runs one on the
  ``input`` text and returns its structured result (``output``: text, a label or a JSON object).

Every error is JSON in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, with a
4xx status for anything the caller can fix. Nothing is kept in process memory that two worker
processes would disagree on: documents live in Chroma, rate-limit counts in a SQLite file, and
the per-user apps are caches of what the profile says.

Example:
    >>> from appkit.config import Profile
    >>> from appkit.server.app import create_app
    >>> from appkit.testing import FakeChatModel, HashingEmbeddings
    >>> from fastapi.testclient import TestClient
    >>> app = create_app(Profile(), embeddings=HashingEmbeddings(), chat_model=FakeChatModel())
    >>> TestClient(app, client=("127.0.0.1", 5000)).get("/health").json()["status"]
    'ok'
"""

from __future__ import annotations

import array
import base64
import binascii
import dataclasses
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path, PurePath
from typing import Any

import anyio
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from appkit import __version__
from appkit.config import Profile, find_profile
from appkit.errors import AppkitError, ModelNotAvailableError
from appkit.server.auth import LOCAL_USER, KeyRing, RateLimiter, is_loopback
from appkit.server.schemas import (
    ChatRequest,
    EmbeddingsRequest,
    IngestRequest,
    SearchRequest,
    TaskRequest,
)
from appkit.server.users import UserApps

RAG_MODEL = "appkit-rag"
AGENT_MODEL = "appkit-agent"
EMBEDDINGS_ALIAS = "appkit-embeddings"


class ApiError(Exception):
    """An error answered as OpenAI-style JSON with an HTTP status."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None,
                 headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.type = status, message, type
        self.code, self.param, self.headers = code, param, dict(headers or {})

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


@dataclasses.dataclass
class _Final:
    """The end of a streamed answer: usage, finish reason and appkit's extra fields."""

    usage: dict[str, int]
    finish_reason: str = "stop"
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _State:
    profile: Profile
    users: UserApps
    keys: KeyRing
    limiter: RateLimiter | None
    chat_models: dict[str, Any]
    http_transport: Any
    task_models: dict[tuple[str, str, int | None], Any] = dataclasses.field(default_factory=dict)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


def create_app(profile: Profile, *, embeddings: Any = None, chat_model: Any = None,
               chat_models: Mapping[str, Any] | None = None,
               environ: Mapping[str, str] | None = None, http_transport: Any = None) -> FastAPI:
    """Build the server for ``profile``.

    Args:
        profile: models, store, tools and the ``[server]`` table (keys, limits).
        embeddings: replace the profile's embedder (tests pass a fake).
        chat_model: replace the profile's chat model behind ``appkit-rag``/``appkit-agent``.
        chat_models: more models callable by name, besides the installed catalogue ones.
        environ: where ``server.api_keys_env`` is read (default: ``os.environ``).
        http_transport: the ``httpx`` transport of the ``http_json`` tool (tests mock it).
    """
    s = profile.server
    limiter = None
    if s.rate_limit_per_minute:
        limiter = RateLimiter(profile.data_dir / "server" / "ratelimit.sqlite",
                              s.rate_limit_per_minute)
    state = _State(profile=profile,
                   users=UserApps(profile, embeddings=embeddings, chat_model=chat_model),
                   keys=KeyRing.from_config(s, environ), limiter=limiter,
                   chat_models=dict(chat_models or {}), http_transport=http_transport)
    app = FastAPI(title="appkit", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.appkit = state
    app.add_middleware(_BodyLimit, max_bytes=s.max_body_bytes)
    app.add_middleware(_Authenticate, state=state)  # outermost: before any body is read
    _install_error_handlers(app)

    def caller(request: Request) -> str:
        return request.state.appkit_user

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__,
                "store": "chroma-server" if profile.store.host else "chroma-embedded",
                "auth": "api-keys" if state.keys else "loopback-only"}

    @app.get("/v1/models")
    def models(user: str = Depends(caller)) -> dict[str, Any]:
        return {"object": "list", "data": [
            {"id": name, "object": "model", "created": 0, "owned_by": "appkit"}
            for name in _model_names(state)
        ]}

    @app.post("/v1/chat/completions")
    def chat_completions(body: ChatRequest, user: str = Depends(caller)) -> Any:
        events = _chat_events(state, user, body)
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            include_usage = bool((body.stream_options or {}).get("include_usage"))
            return _sse_response(events, cid, created, body.model, include_usage)
        pieces, final = [], _Final({})
        for item in events:
            if isinstance(item, _Final):
                final = item
            else:
                pieces.append(item)
        extra = dict(final.extra)
        message: dict[str, Any] = {"role": "assistant", "content": "".join(pieces)}
        if "tool_calls" in extra:
            message["tool_calls"] = [{k: v for k, v in c.items() if k != "index"}
                                     for c in extra.pop("tool_calls")]
            message["content"] = message["content"] or None
        return {
            "id": cid, "object": "chat.completion", "created": created, "model": body.model,
            "choices": [{"index": 0, "message": message, "finish_reason": final.finish_reason,
                         "logprobs": None}],
            "usage": _usage(final.usage), **({"appkit": extra} if extra else {}),
        }

    @app.post("/v1/embeddings")
    def embeddings_endpoint(body: EmbeddingsRequest, user: str = Depends(caller)) -> Any:
        known = {EMBEDDINGS_ALIAS, profile.embedding.model}
        if body.model not in known:
            raise ApiError(404, f"unknown embedding model '{body.model}'; this server embeds "
                                f"with: {', '.join(sorted(known))}", code="model_not_found",
                           param="model")
        texts = list(body.input)
        vectors = state.users.embeddings.embed_documents(texts)
        data = []
        for i, vec in enumerate(vectors):
            value: Any = [float(x) for x in vec]
            if body.encoding_format == "base64":
                value = base64.b64encode(array.array("f", value).tobytes()).decode("ascii")
            data.append({"object": "embedding", "index": i, "embedding": value})
        words = sum(len(t.split()) for t in texts)  # a word count: embedders differ in tokenizers
        return {"object": "list", "data": data, "model": body.model,
                "usage": {"prompt_tokens": words, "total_tokens": words}}

    @app.post("/ingest")
    def ingest(body: IngestRequest, user: str = Depends(caller)) -> Any:
        return _ingest(state, user, body)

    @app.post("/search")
    def search(body: SearchRequest, user: str = Depends(caller)) -> Any:
        user_app = state.users.get(user)
        docs = user_app.retriever.invoke(body.query)[: body.k or profile.retrieval.k]
        return {"query": body.query, "results": [
            {"text": d.page_content, "source": os.path.basename(str(d.metadata.get("source", ""))),
             "heading": d.metadata.get("heading") or None, "page": d.metadata.get("page"),
             "relevance": d.metadata.get("relevance"), "chunk_id": d.id}
            for d in docs
        ]}

    @app.get("/v1/tasks")
    def tasks(user: str = Depends(caller)) -> dict[str, Any]:
        from appkit.tasks import get_task, task_names

        return {"object": "list", "data": [
            {"id": n, "object": "task", "description": get_task(n).description,
             "roles": list(get_task(n).roles), "metrics": list(get_task(n).metrics),
             "output_schema": get_task(n).output_schema} for n in task_names()]}

    @app.post("/v1/tasks/{task}")
    def run_task_endpoint(task: str, body: TaskRequest, user: str = Depends(caller)) -> Any:
        return _run_task(state, user, task, body)

    return app


def app_from_environment() -> FastAPI:
    """The uvicorn factory of ``appkit serve``: the profile named by ``$APPKIT_PROFILE``
    (``$APPKIT_SERVE_WARM=1`` loads the models before the first request)."""
    app = create_app(find_profile(os.environ.get("APPKIT_PROFILE"), create=False))
    if os.environ.get("APPKIT_SERVE_WARM") == "1":
        warm_up(app)
    return app


def warm_up(app: FastAPI) -> None:
    """Load the embedder and the chat model now, so the first request does not wait for them."""
    state: _State = app.state.appkit
    state.users.embeddings.embed_query("warm up")
    llm = state.users.get(LOCAL_USER).chat_model
    if hasattr(llm, "warm_up"):
        llm.warm_up()


# --- auth --------------------------------------------------------------------------------------


class _Authenticate:
    """Identify the caller (401/403/429 as JSON) before the body is read; ``/health`` is open."""

    def __init__(self, app: Any, state: _State):
        self.app = app
        self.state = state

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] == "/health":
            await self.app(scope, receive, send)
            return
        try:
            # A thread: the rate-limit write may wait on another worker's SQLite lock.
            user = await anyio.to_thread.run_sync(_authenticate, self.state, Request(scope))
        except ApiError as exc:
            await exc.response()(scope, receive, send)
            return
        scope.setdefault("state", {})["appkit_user"] = user
        await self.app(scope, receive, send)


def _authenticate(state: _State, request: Request) -> str:
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else ""
    token = token or request.headers.get("x-api-key", "").strip()
    if state.keys:
        if not token:
            raise ApiError(401, "missing API key: send 'Authorization: Bearer <key>'",
                           code="missing_api_key")
        user = state.keys.identify(token)
        if user is None:
            raise ApiError(401, "invalid API key", code="invalid_api_key")
    else:
        client = request.client.host if request.client else None
        if not is_loopback(client):
            raise ApiError(403, "this server has no API keys, so it answers only local clients; "
                                "set server.api_keys in the profile to accept others",
                           type="permission_error", code="loopback_only")
        user = LOCAL_USER
    if state.limiter is not None:
        retry = state.limiter.hit(user)
        if retry is not None:
            raise ApiError(429, f"rate limit of {state.limiter.per_minute} requests per minute "
                                f"reached; retry in {retry:.0f} s", type="rate_limit_error",
                           code="rate_limit_exceeded",
                           headers={"Retry-After": str(int(retry + 0.999))})
    return user


# --- chat --------------------------------------------------------------------------------------


def _model_names(state: _State) -> list[str]:
    from appkit.models.catalogue import list_models

    names = [RAG_MODEL, AGENT_MODEL, *state.chat_models]
    names += [m.name for m in list_models()
              if m.role in ("chat", "completion") and m.installed and m.name not in names]
    return names


def _named_chat_model(state: _State, name: str) -> Any:
    if name in state.chat_models:
        return state.chat_models[name]
    from appkit.models import make_chat_model
    from appkit.models.catalogue import get_spec

    try:
        spec = get_spec(name)
    except ModelNotAvailableError:
        spec = None
    if spec is None or spec.role not in ("chat", "completion") or not spec.installed:
        raise ApiError(404, f"unknown model '{name}'; GET /v1/models lists the models of this "
                            "server", code="model_not_found", param="model")
    return make_chat_model(state.profile, name)


def _with_overrides(llm: Any, overrides: dict[str, Any]) -> Any:
    """A copy of ``llm`` with the request's generation settings (fields it does not have are
    left alone)."""
    fields = getattr(type(llm), "model_fields", {})
    update = {k: v for k, v in overrides.items() if k in fields}
    return llm.model_copy(update=update) if update else llm


def _conversation(body: ChatRequest) -> tuple[str, list[tuple[str, str]]]:
    """The last user message, and the (user, assistant) pairs before it."""
    last = body.messages[-1]
    if last.role != "user" or not last.text.strip():
        raise ApiError(400, "the last message must be a non-empty user message",
                       param="messages")
    history, pending = [], None
    for m in body.messages[:-1]:
        if m.role == "user":
            pending = m.text
        elif m.role == "assistant" and pending is not None:
            history.append((pending, m.text))
            pending = None
    return last.text, history


def _chat_events(state: _State, user: str, body: ChatRequest) -> Iterator[str | _Final]:
    """Validate the request now; return the iterator that does the work."""
    overrides = body.overrides()
    if body.model in (RAG_MODEL, AGENT_MODEL):
        if body.tools:
            raise ApiError(400, f"'{body.model}' takes no tools from the request: appkit-agent "
                                "uses the profile's [tools]; send tools to a catalogue model",
                           param="tools")
        question, history = _conversation(body)
        app = state.users.get(user)
        if body.model == RAG_MODEL:
            return _rag_events(app, overrides, question, history)
        return _agent_events(state, app, overrides, question, history)
    llm = _with_overrides(_named_chat_model(state, body.model), overrides)
    return _plain_events(llm, body)


def _citations(citations: Any) -> list[dict[str, Any]]:
    return [{"index": c.index, "source": os.path.basename(c.source), "label": c.label,
             "page": c.page, "heading": c.heading or None, "snippet": c.snippet,
             "relevance": c.relevance, "cited": c.cited} for c in citations]


def _rag_events(app: Any, overrides: dict[str, Any], question: str,
                history: list[tuple[str, str]]) -> Iterator[str | _Final]:
    from appkit.chains.rag import RagChain
    from appkit.types import Answer

    chain = RagChain.from_profile(app.profile, app.retriever,
                                  _with_overrides(app.chat_model, overrides))
    chain.max_tokens = overrides.get("max_tokens", chain.max_tokens)
    for item in chain.stream(question, history):
        if isinstance(item, Answer):
            yield _Final(item.usage, extra={"citations": _citations(item.citations),
                                            "found": item.found,
                                            "standalone_question": item.standalone_question})
        else:
            yield item


def _agent_events(state: _State, app: Any, overrides: dict[str, Any], question: str,
                  history: list[tuple[str, str]]) -> Iterator[str | _Final]:
    from appkit.tools.agent import Agent, AgentResult
    from appkit.tools.registry import ToolContext, make_tools

    ctx = ToolContext(app.profile, retriever=lambda: app.retriever,
                      http_transport=state.http_transport)
    t = app.profile.tools
    agent = Agent(_with_overrides(app.chat_model, overrides), make_tools(ctx),
                  max_steps=t.max_steps, time_limit_s=t.time_limit_s)
    result = None
    for item in agent.iter_steps(question, history):
        if isinstance(item, AgentResult):
            result = item
    assert result is not None
    yield result.text
    yield _Final(result.usage, "stop" if result.stopped == "answer" else "length", extra={
        "steps": [s.to_dict() for s in result.steps], "stopped": result.stopped,
        "citations": _citations(result.citations)})


def _lc_messages(body: ChatRequest) -> list[BaseMessage]:
    """OpenAI messages (tool calls and tool results included) as LangChain messages."""
    import json

    messages: list[BaseMessage] = []
    for i, m in enumerate(body.messages):
        extra = m.model_extra or {}
        if m.role in ("system", "developer"):
            messages.append(SystemMessage(content=m.text))
        elif m.role == "user":
            messages.append(HumanMessage(content=m.text))
        elif m.role == "tool":
            if not extra.get("tool_call_id"):
                raise ApiError(400, "a tool message needs its tool_call_id",
                               param=f"messages.{i}.tool_call_id")
            messages.append(ToolMessage(content=m.text, tool_call_id=str(extra["tool_call_id"])))
        else:
            calls = []
            for call in extra.get("tool_calls") or ():
                try:
                    fn = call["function"]
                    args = fn.get("arguments") or "{}"
                    calls.append({"name": fn["name"], "id": call.get("id") or "",
                                  "args": json.loads(args) if isinstance(args, str) else args})
                except (KeyError, TypeError, ValueError):
                    raise ApiError(400, "tool_calls need a function name and JSON arguments",
                                   param=f"messages.{i}.tool_calls") from None
            messages.append(AIMessage(content=m.text, tool_calls=calls))
    return messages


def _plain_events(llm: Any, body: ChatRequest) -> Iterator[str | _Final]:
    import json

    messages = _lc_messages(body)
    if body.tools:
        try:
            llm = llm.bind_tools(body.tools, tool_choice=body.tool_choice)
        except NotImplementedError:
            raise ApiError(400, f"model '{body.model}' cannot call tools",
                           param="tools") from None
        except ValueError as exc:
            raise ApiError(400, str(exc), param="tool_choice") from None
    usage: dict[str, int] = {}
    finish = "stop"
    calls: list[dict[str, Any]] = []
    for chunk in llm.stream(messages):
        if chunk.usage_metadata:
            usage = {k: int(v) for k, v in chunk.usage_metadata.items() if isinstance(v, int)}
        finish = {"length": "length"}.get(chunk.response_metadata.get("finish_reason"), finish)
        calls += getattr(chunk, "tool_calls", None) or []
        if chunk.text:
            yield chunk.text
    extra: dict[str, Any] = {}
    if calls:
        finish = "tool_calls"
        extra["tool_calls"] = [
            {"index": i, "id": c.get("id") or f"call_{uuid.uuid4().hex[:24]}", "type": "function",
             "function": {"name": c["name"], "arguments": json.dumps(c["args"])}}
            for i, c in enumerate(calls)]
    yield _Final(usage, finish, extra)


def _usage(usage: dict[str, int]) -> dict[str, int]:
    prompt, completion = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": usage.get("total_tokens", prompt + completion)}


# --- tasks -------------------------------------------------------------------------------------


def _task_model(state: _State, user: str, spec: Any, body: TaskRequest) -> tuple[str, Any]:
    """The model a task request names (default: the profile's), refused if the task cannot use
    it. Callers name models, never folders: a fine-tuned encoder is served as the profile's
    ``chat.model`` or through ``create_app(chat_models=...)``."""
    from appkit.tasks.cli import folder_role, make_task_model

    overrides = {"max_tokens": body.max_tokens} if body.max_tokens else {}
    name = body.model
    if name is None:
        name = state.profile.chat.model
        if folder_role(state.profile.resolve(name)) is None:  # the app's (shared) chat model
            return name, _with_overrides(state.users.get(user).chat_model, overrides)
    elif name not in state.chat_models:
        from appkit.models.catalogue import get_spec

        try:
            mspec = get_spec(name)
        except ModelNotAvailableError:
            mspec = None
        if mspec is None or not mspec.installed:
            raise ApiError(404, f"unknown model '{name}'; GET /v1/models lists the models of "
                                "this server", code="model_not_found", param="model")
    if name in state.chat_models:
        llm = state.chat_models[name]
        role = getattr(llm, "role", "") or "chat"
        if role not in spec.roles:
            raise ApiError(400, f"model '{name}' is a {role} model; {spec.name} accepts "
                                f"{', '.join(spec.roles)} models", param="model")
        return name, _with_overrides(llm, overrides)
    key = (spec.name, name, body.max_tokens)
    with state.lock:
        llm = state.task_models.get(key)
    if llm is None:
        try:
            llm = make_task_model(state.profile, spec, name, body.max_tokens)
        except ModelNotAvailableError:
            raise
        except AppkitError as exc:
            raise ApiError(400, str(exc), param="model") from None
        with state.lock:  # encoders load their weights once, on their first request
            llm = state.task_models.setdefault(key, llm)
    return name, llm


def _run_task(state: _State, user: str, task: str, body: TaskRequest) -> dict[str, Any]:
    from appkit.tasks import TaskInputError, TaskOutputError, check_schema, get_task, run_task
    from appkit.tasks.cli import task_context

    try:
        spec = get_task(task)
    except AppkitError as exc:
        raise ApiError(400, str(exc), code="unknown_task", param="task") from None
    if body.tests is not None:
        raise ApiError(400, "this server does not run code; run the tests where you trust the "
                            "code: appkit run code --input FILE --tests FILE", param="tests")
    try:
        schema = check_schema(body.json_schema) if body.json_schema is not None else None
    except TaskInputError as exc:
        raise ApiError(400, str(exc), param="schema") from None
    app = state.users.get(user)
    name, llm = (state.profile.chat.model, None) if task == "qa" else _task_model(
        state, user, spec, body)
    try:
        _, ctx = task_context(app.profile, task, llm=llm, app=app, labels=body.labels,
                              source=body.source_lang, target=body.target_lang, shots=body.shots,
                              schema=schema, max_tokens=body.max_tokens,
                              embeddings=state.users.embeddings if app.profile.tasks.examples
                              else None)
        result = run_task(task, body.input, ctx)
    except TaskInputError as exc:
        raise ApiError(400, str(exc), code="invalid_task_input", param="input") from None
    except TaskOutputError as exc:
        raise ApiError(422, str(exc), type="invalid_output_error",
                       code="output_schema_mismatch") from None
    return {"object": "task.result", "model": name, **result.to_dict()}


# --- streaming ---------------------------------------------------------------------------------

_END = object()


def _next(iterator: Iterator[Any]) -> Any:
    return next(iterator, _END)


async def _in_thread(iterator: Iterator[Any], first: Any) -> AsyncIterator[Any]:
    """Items of a blocking iterator, each pulled in a worker thread; the iterator is always closed
    (a generator holding the model's lock must not wait for the garbage collector)."""
    try:
        item = first
        while item is not _END:
            yield item
            item = await anyio.to_thread.run_sync(_next, iterator)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(close)


def _sse_response(events: Iterator[str | _Final], cid: str, created: int, model: str,
                  include_usage: bool) -> StreamingResponse:
    # The first item is computed before the response starts, so that errors in retrieval or in
    # loading the model still get a proper status; later errors arrive as an SSE error event.
    try:
        first = _next(events)
    except BaseException:
        getattr(events, "close", lambda: None)()
        raise

    def frame(data: dict[str, Any]) -> bytes:
        import json

        return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        return frame({"id": cid, "object": "chat.completion.chunk", "created": created,
                      "model": model, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                   "finish_reason": finish}], **extra})

    async def body() -> AsyncIterator[bytes]:
        final = _Final({})
        yield chunk({"role": "assistant", "content": ""})
        try:
            async for item in _in_thread(events, first):
                if isinstance(item, _Final):
                    final = item
                else:
                    yield chunk({"content": item})
        except Exception as exc:  # noqa: BLE001 - the status line is gone; report in-band
            yield frame(_error_for(exc).body())
            yield b"data: [DONE]\n\n"
            return
        extra = dict(final.extra)
        if "tool_calls" in extra:
            yield chunk({"tool_calls": extra.pop("tool_calls")})
        yield chunk({}, final.finish_reason, **({"appkit": extra} if extra else {}))
        if include_usage:
            yield frame({"id": cid, "object": "chat.completion.chunk", "created": created,
                         "model": model, "choices": [], "usage": _usage(final.usage)})
        yield b"data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# --- ingest ------------------------------------------------------------------------------------


def _safe_name(name: str, index: int) -> str:
    from appkit.ingest.loaders import loader_for, supported_extensions

    if PurePath(name).name != name or name.startswith(".") or "\\" in name or "\x00" in name:
        raise ApiError(400, f"'{name}' is not a plain file name (no folders, no leading dot)",
                       param=f"files[{index}].name")
    if loader_for(name) is None:
        raise ApiError(400, f"'{name}': unsupported file type; supported: "
                            f"{', '.join(supported_extensions())}", param=f"files[{index}].name")
    return name


def _ingest(state: _State, user: str, body: IngestRequest) -> dict[str, Any]:
    if not body.files and not body.delete:
        raise ApiError(400, "nothing to do: send 'files' to add or 'delete' to remove",
                       param="files")
    contents: dict[str, bytes] = {}
    for i, f in enumerate(body.files):
        name = _safe_name(f.name, i)
        if (f.content is None) == (f.content_base64 is None):
            raise ApiError(400, f"'{name}': send exactly one of 'content' and 'content_base64'",
                           param=f"files[{i}]")
        if f.content is not None:
            contents[name] = f.content.encode("utf-8")
        else:
            try:
                contents[name] = base64.b64decode(f.content_base64 or "", validate=True)
            except (binascii.Error, ValueError):
                raise ApiError(400, f"'{name}': content_base64 is not valid base64",
                               param=f"files[{i}].content_base64") from None
    doomed = [PurePath(n).name for n in body.delete]
    app = state.users.get(user)
    folder = state.users.upload_dir(user)
    with state.users.ingest_lock(user):
        for name, data in contents.items():
            tmp = folder / f".{name}.{uuid.uuid4().hex}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, folder / name)
        deleted = []
        for name in doomed:
            target = folder / name
            if name and target.is_file():
                target.unlink()
                deleted.append(name)
        app.ingestor.progress = False
        report = app.ingest([folder])
    return {"added": sorted(contents), "deleted": deleted, "report": report.to_dict(),
            "documents": sorted(p.name for p in Path(folder).iterdir() if not p.name.startswith("."))}


# --- errors ------------------------------------------------------------------------------------


class _BodyLimit:
    """Refuse bodies over ``max_bytes`` with a JSON 413, whether or not they declare a length.

    FastAPI's own ``max_body_size`` answers a too-large ``Content-Length`` in plain text, which
    OpenAI clients cannot read as an error; this is the same check with the JSON answer.
    """

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.datastructures import Headers

        length = Headers(scope=scope).get("content-length", "")
        if length.isdigit() and int(length) > self.max_bytes:
            await _too_large().response()(scope, receive, send)
            return
        received = 0

        async def limited() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise StarletteHTTPException(413)
            return message

        await self.app(scope, limited, send)


def _too_large() -> ApiError:
    return ApiError(413, "the request body is too large (server.max_body_bytes)",
                    code="request_too_large")


def _error_for(exc: BaseException) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ModelNotAvailableError):
        return ApiError(503, str(exc), type="server_error", code="model_not_available")
    if isinstance(exc, AppkitError):
        return ApiError(500, str(exc), type="server_error", code="appkit_error")
    return ApiError(500, "internal error (the server log has the details)", type="server_error")


def _install_error_handlers(app: FastAPI) -> None:
    import logging

    log = logging.getLogger("appkit.server")

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            detail = (first.get("ctx") or {}).get("error", "")
            return ApiError(400, f"the body is not valid JSON ({detail})",
                            code="invalid_json").response()
        loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        if first.get("type") == "model_attributes_type" or not loc:
            message = "the body must be a JSON object (Content-Type: application/json)"
        else:
            message = f"{loc}: {first.get('msg', 'invalid value')}"
        return ApiError(400, message, param=loc or None, code="invalid_value").response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 413:
            return _too_large().response()
        messages = {404: f"no such endpoint: {request.method} {request.url.path}",
                    405: f"method {request.method} is not allowed on {request.url.path}"}
        codes = {404: "not_found", 405: "method_not_allowed"}
        return ApiError(exc.status_code, messages.get(exc.status_code, str(exc.detail)),
                        code=codes.get(exc.status_code), headers=exc.headers).response()

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        error = _error_for(exc)
        if error.status >= 500:
            log.exception("error answering %s %s", request.method, request.url.path)
        return error.response()

