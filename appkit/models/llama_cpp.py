"""``LlamaCppChatModel``: a LangChain chat model over a GGUF file run by llama-cpp-python.

Loading is lazy (first call or :meth:`LlamaCppChatModel.warm_up`) and shared: every instance that
names the same file and context settings uses one loaded ``llama_cpp.Llama`` and one lock, so
concurrent callers (Streamlit reruns, server workers, ragas judges) never enter llama.cpp at once.

Tool calling: :meth:`LlamaCppChatModel.bind_tools` passes OpenAI-style tool schemas to the GGUF's
chat template (Qwen2.5 and Hermes-style templates render them), and the model's
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` blocks come back as
``AIMessage.tool_calls``. Without bound tools nothing changes.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.ai import UsageMetadata
from langchain_core.messages.tool import invalid_tool_call, tool_call, tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict

from appkit.lazy import require
from appkit.models.generation import GenerationFields


def default_threads() -> int:
    """Threads for llama.cpp: every core on small machines, half of them (the physical ones) above 4."""
    n = os.cpu_count() or 1
    return n if n <= 4 else n // 2


@dataclass
class _Loaded:
    llama: Any
    lock: threading.Lock
    has_chat_template: bool
    supports_tools: bool = False  # the chat template renders a ``tools`` list


_loaded: dict[tuple, _Loaded] = {}
_loaded_guard = threading.Lock()


@atexit.register
def _close_all() -> None:
    """Free loaded models at exit, before interpreter shutdown tears down what
    ``Llama.__del__`` needs (otherwise every process ends with an ignored-exception traceback)."""
    with _loaded_guard:
        for loaded in _loaded.values():
            try:
                loaded.llama.close()
            except Exception:  # noqa: BLE001 - best effort at exit
                pass
        _loaded.clear()


def load_llama(model_path: str, n_ctx: int, n_threads: int, lora_path: str = "", **extra: Any) -> _Loaded:
    """Load (once per process) a GGUF with llama-cpp-python and return it with its lock."""
    key = (os.path.abspath(model_path), n_ctx, n_threads, lora_path, tuple(sorted(extra.items())))
    with _loaded_guard:
        if key not in _loaded:
            llama_cpp = require("llama_cpp", extra="chat", package="llama-cpp-python")
            kwargs: dict[str, Any] = dict(
                model_path=model_path,
                n_ctx=n_ctx,
                n_threads=n_threads or default_threads(),
                verbose=False,
                **extra,
            )
            if lora_path:
                kwargs["lora_path"] = lora_path
            llama = llama_cpp.Llama(**kwargs)
            template_text = llama.metadata.get("tokenizer.chat_template") or ""
            _loaded[key] = _Loaded(llama, threading.Lock(), bool(template_text),
                                   supports_tools="tools" in template_text)
        return _loaded[key]


def _to_openai(message: BaseMessage) -> dict[str, Any]:
    if isinstance(message, SystemMessage):
        role = "system"
    elif isinstance(message, HumanMessage):
        role = "user"
    elif isinstance(message, AIMessage):
        if message.tool_calls:
            # Arguments stay a dict: HF chat templates render them with ``| tojson``.
            return {"role": "assistant", "content": message.text, "tool_calls": [
                {"id": c["id"], "type": "function",
                 "function": {"name": c["name"], "arguments": c["args"]}}
                for c in message.tool_calls
            ]}
        role = "assistant"
    elif isinstance(message, ToolMessage):
        return {"role": "tool", "content": message.text, "tool_call_id": message.tool_call_id}
    else:
        role = "user"
    return {"role": role, "content": message.text}


def render_completion_prompt(messages: list[BaseMessage]) -> str:
    """Render a conversation as plain text for a base model that has no chat template."""
    parts: list[str] = []
    for m in messages:
        if isinstance(m, SystemMessage):
            parts.append(m.text)
        elif isinstance(m, AIMessage):
            parts.append(f"Answer: {m.text}")
        else:
            parts.append(m.text)
    return "\n\n".join(parts) + "\nAnswer:"


_TOOL_CALL_OPEN = "<tool_call>"
_TOOL_CALL_BLOCK = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.S)


def parse_tool_calls(text: str, names: Sequence[str] | None = None
                     ) -> tuple[str, list[Any], list[Any]]:
    """Split model output into its prose and its ``<tool_call>{json}</tool_call>`` blocks.

    Small models (Qwen2.5-Coder-0.5B) often drop the tags and answer with the bare JSON object;
    when ``names`` is given, output that is nothing but such objects naming those tools counts too.

    Returns:
        The text without the blocks, the valid calls (LangChain ``ToolCall``) and the blocks that
        are not a JSON object with a string ``name`` and object ``arguments`` (``InvalidToolCall``).
    """
    calls: list[Any] = []
    invalid: list[Any] = []
    for match in _TOOL_CALL_BLOCK.finditer(text):
        raw = match.group(1).strip()
        call_id = f"call_{uuid.uuid4().hex[:24]}"
        try:
            data = json.loads(raw)
            name = data["name"]
            args = data.get("arguments", data.get("parameters", {}))
            if isinstance(args, str):
                args = json.loads(args) if args.strip() else {}
            if not isinstance(name, str) or not isinstance(args, dict):
                raise ValueError("expected a string 'name' and an object 'arguments'")
        except (ValueError, KeyError, TypeError) as exc:
            invalid.append(invalid_tool_call(name=None, args=raw, id=call_id,
                                             error=f"malformed tool call: {exc}"))
            continue
        calls.append(tool_call(name=name, args=args, id=call_id))
    if not calls and not invalid:
        return (_parse_bare_calls(text, names) if names else None) or (text, calls, invalid)
    return _TOOL_CALL_BLOCK.sub("", text).strip(), calls, invalid


def _parse_bare_calls(text: str, names: Sequence[str]) -> tuple[str, list[Any], list[Any]] | None:
    """Calls written as bare (or fenced) JSON objects; None unless the whole text is such calls."""
    body = text.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", body, re.S)
    body = fenced.group(1) if fenced else body
    decoder, pos, calls = json.JSONDecoder(), 0, []
    while pos < len(body):
        try:
            data, pos = decoder.raw_decode(body, pos)
        except ValueError:
            return None
        while pos < len(body) and body[pos].isspace():
            pos += 1
        if not isinstance(data, dict) or data.get("name") not in names:
            return None
        args = data.get("arguments", data.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError:
                return None
        if not isinstance(args, dict):
            return None
        calls.append(tool_call(name=data["name"], args=args,
                               id=f"call_{uuid.uuid4().hex[:24]}"))
    return ("", calls, []) if calls else None


class _ToolCallSplitter:
    """Passes streamed prose through and holds back everything from the first ``<tool_call>``
    (or all of it when the output opens like a bare JSON call)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        self.buffer = ""
        self.holding = False
        self.started = False

    def feed(self, text: str) -> str:
        self.buffer += text
        if self.holding:
            return ""
        if not self.started:
            head = self.buffer.lstrip()
            if not head:
                return ""
            self.started = True
            if head[0] in "{`":
                self.holding = True
                return ""
        start = self.buffer.find(_TOOL_CALL_OPEN)
        if start >= 0:
            self.holding = True
            out, self.buffer = self.buffer[:start], self.buffer[start:]
            return out
        keep = next((n for n in range(len(_TOOL_CALL_OPEN) - 1, 0, -1)
                     if self.buffer.endswith(_TOOL_CALL_OPEN[:n])), 0)
        out = self.buffer[:len(self.buffer) - keep]
        self.buffer = self.buffer[len(out):]
        return out

    def finish(self) -> tuple[str, list[Any], list[Any]]:
        return parse_tool_calls(self.buffer, self.names)


def tool_instructions(tools: Sequence[dict[str, Any]]) -> str:
    """The tool prompt Qwen2.5's template writes, for models whose template has no ``tools``."""
    listed = "\n".join(json.dumps(t, ensure_ascii=False) for t in tools)
    return (
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        f"You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        f"{listed}\n</tools>\n\nFor each function call, return a json object with function name "
        "and arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n"
        '{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>'
    )


def _with_tool_instructions(messages: list[BaseMessage],
                            tools: Sequence[dict[str, Any]]) -> list[BaseMessage]:
    """Put the tool prompt in the system message and write past calls and results as text."""
    out: list[BaseMessage] = []
    for m in messages:
        if isinstance(m, AIMessage) and m.tool_calls:
            blocks = "".join(
                f"\n<tool_call>\n{json.dumps({'name': c['name'], 'arguments': c['args']})}\n"
                "</tool_call>" for c in m.tool_calls)
            out.append(AIMessage(content=(m.text + blocks).strip()))
        elif isinstance(m, ToolMessage):
            out.append(HumanMessage(content=f"<tool_response>\n{m.text}\n</tool_response>"))
        else:
            out.append(m)
    prompt = tool_instructions(tools)
    if out and isinstance(out[0], SystemMessage):
        return [SystemMessage(content=f"{out[0].text}\n\n{prompt}"), *out[1:]]
    return [SystemMessage(content=prompt), *out]


def _tool_choice(choice: Any, tools: Sequence[dict[str, Any]]) -> Any:
    """LangChain's ``tool_choice`` in the form llama-cpp-python takes.

    llama.cpp can force exactly one named function (with a JSON-schema grammar); ``"any"`` with
    several tools therefore stays ``"auto"``.
    """
    names = [t["function"]["name"] for t in tools]
    if choice in (None, "auto"):
        return "auto"
    if choice == "none":
        return "none"
    if choice in ("any", "required", True):
        choice = names[0] if len(names) == 1 else "auto"
        if choice == "auto":
            return "auto"
    if isinstance(choice, str):
        if choice not in names:
            raise ValueError(f"tool_choice '{choice}' is not one of the bound tools: "
                             f"{', '.join(names)}")
        return {"type": "function", "function": {"name": choice}}
    return choice


# llama-cpp-python's JSON-schema converter lets a JSON string hold raw control characters, which
# JSON forbids: a model that writes a newline inside a string then produces output that cannot
# parse (seen with SmolLM2 and Gemma 3 on the extract benchmark). This is the character rule
# llama.cpp's own converter uses.
_LOOSE_CHAR = 'char ::= [^"\\\\] |'
_JSON_CHAR = 'char ::= [^"\\\\\\x7F\\x00-\\x1F] |'


def json_schema_grammar(schema: dict[str, Any]) -> Any:
    """A llama.cpp grammar whose every complete output is JSON valid against ``schema``."""
    llama_cpp = require("llama_cpp", extra="chat", package="llama-cpp-python")
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    gbnf = json_schema_to_gbnf(json.dumps(schema)).replace(_LOOSE_CHAR, _JSON_CHAR)
    return llama_cpp.LlamaGrammar.from_string(gbnf, verbose=False)


class LlamaCppChatModel(GenerationFields, BaseChatModel):
    """A chat model over a local GGUF file (llama-cpp-python), with streaming and usage metadata.

    Models with a chat template in their GGUF are called through ``create_chat_completion``; base
    models without one (Gemma 3 270M) get a plain-text completion prompt and stop at a blank line.

    Example:
        >>> from appkit.models.llama_cpp import LlamaCppChatModel
        >>> llm = LlamaCppChatModel(model_path="model.gguf", max_tokens=32)  # nothing loaded yet
        >>> llm.max_tokens
        32

    Attributes:
        model_path: the GGUF file.
        model_name: the catalogue name, reported in metadata.
        n_ctx: context length in tokens.
        n_threads: 0 picks :func:`default_threads`.
        lora_path: an optional GGUF LoRA adapter applied at load.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_path: str
    model_name: str = ""
    n_ctx: int = 4096
    n_threads: int = 0
    lora_path: str = ""

    @property
    def _llm_type(self) -> str:
        return "appkit-llama-cpp"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {
            "model_name": self.model_name or os.path.basename(self.model_path),
            "n_ctx": self.n_ctx,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "top_k": self.top_k,
            "top_p": self.top_p,
            "repeat_penalty": self.repeat_penalty,
        }

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> dict[str, Any]:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "llama_cpp"
        params["ls_model_name"] = (kwargs.get("model") or self.model_name
                                   or os.path.basename(self.model_path))
        return params

    def warm_up(self) -> _Loaded:
        """Load the model now (otherwise the first call does)."""
        return load_llama(self.model_path, self.n_ctx, self.n_threads, self.lora_path)

    @property
    def llama(self) -> Any:
        """The underlying ``llama_cpp.Llama`` (loads it)."""
        return self.warm_up().llama

    def bind_tools(self, tools: Sequence[dict[str, Any] | type | Callable | Any], *,
                   tool_choice: str | dict | bool | None = None, **kwargs: Any) -> Any:
        """Offer ``tools`` to the model; its calls come back in ``AIMessage.tool_calls``.

        Args:
            tools: LangChain tools, functions, pydantic models or OpenAI tool dicts.
            tool_choice: ``"auto"`` (default), ``"none"``, a tool name (forced with a grammar), or
                ``"any"`` (forced only when there is one tool).

        Example:
            >>> from langchain_core.tools import tool
            >>> @tool
            ... def add(a: int, b: int) -> int:
            ...     \"\"\"Add two integers.\"\"\"
            ...     return a + b
            >>> llm = LlamaCppChatModel(model_path="model.gguf").bind_tools([add])
            >>> llm.invoke("what is 2 + 3?").tool_calls  # doctest: +SKIP
            [{'name': 'add', 'args': {'a': 2, 'b': 3}, 'id': 'call_...', 'type': 'tool_call'}]
        """
        from langchain_core.utils.function_calling import convert_to_openai_tool

        formatted = [convert_to_openai_tool(t) for t in tools]
        return super().bind(tools=formatted, tool_choice=_tool_choice(tool_choice, formatted),
                            **kwargs)

    def get_num_tokens(self, text: str) -> int:
        """Count tokens with the model's own tokenizer."""
        loaded = self.warm_up()
        with loaded.lock:
            return len(loaded.llama.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def _params(self, stop: list[str] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
        params = {
            "max_tokens": kwargs.pop("max_tokens", self.max_tokens),
            "temperature": kwargs.pop("temperature", self.temperature),
            "top_k": kwargs.pop("top_k", self.top_k),
            "top_p": kwargs.pop("top_p", self.top_p),
            "repeat_penalty": kwargs.pop("repeat_penalty", self.repeat_penalty),
            "seed": kwargs.pop("seed", self.seed),
        }
        stops = list(self.stop) + list(stop or []) + list(kwargs.pop("stop", None) or [])
        if stops:
            params["stop"] = stops
        response_format = kwargs.pop("response_format", None)
        if response_format and response_format.get("schema"):
            # Our grammar instead of llama-cpp-python's (see json_schema_grammar); this also
            # serves base models, whose completion call takes no response_format.
            params["grammar"] = json_schema_grammar(response_format["schema"])
        elif response_format:
            params["response_format"] = response_format
        params.update(kwargs)
        return params

    def _raw_stream(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield (text piece, info) from llama.cpp while holding the model's lock."""
        loaded = self.warm_up()
        params = self._params(stop, dict(kwargs))
        tools = params.pop("tools", None)
        tool_choice = params.pop("tool_choice", None)
        extra: dict[str, Any] = {}
        if tools and tool_choice != "none":
            if loaded.has_chat_template and loaded.supports_tools:
                extra["tools"] = tools
                if isinstance(tool_choice, dict):
                    extra["tool_choice"] = tool_choice
            else:
                messages = _with_tool_instructions(messages, tools)
        forced_name, forced_args = "", []
        with loaded.lock:
            llama = loaded.llama
            start = time.perf_counter()
            first: float | None = None
            pieces = 0
            finish = None
            if loaded.has_chat_template:
                stream = llama.create_chat_completion(
                    messages=[_to_openai(m) for m in messages], stream=True, **params, **extra
                )
                for chunk in stream:
                    choice = chunk["choices"][0]
                    finish = choice.get("finish_reason") or finish
                    for call in choice["delta"].get("tool_calls") or ():  # forced tool_choice
                        function = call.get("function") or {}
                        forced_name = function.get("name") or forced_name
                        if function.get("arguments"):
                            pieces += 1
                            first = first or time.perf_counter()
                            forced_args.append(function["arguments"])
                    text = choice["delta"].get("content") or ""
                    if text:
                        pieces += 1
                        first = first or time.perf_counter()
                        yield text, {}
            else:
                params.setdefault("stop", ["\n\n"])
                prompt = render_completion_prompt(messages)
                for chunk in llama.create_completion(prompt=prompt, stream=True, **params):
                    choice = chunk["choices"][0]
                    finish = choice.get("finish_reason") or finish
                    text = choice.get("text") or ""
                    if text:
                        pieces += 1
                        first = first or time.perf_counter()
                        yield text, {}
            end = time.perf_counter()
            # llama.n_tokens is every token evaluated into the context for this call.
            total = int(getattr(llama, "n_tokens", 0))
            output = max(pieces, 0)
            usage = UsageMetadata(
                input_tokens=max(total - output, 0), output_tokens=output,
                total_tokens=max(total, output),
            )
            info = {
                "usage": usage,
                "finish_reason": finish,
                "time_to_first_token_s": (first or end) - start,
                "generation_s": end - (first or end),
                "model_name": self.model_name or os.path.basename(self.model_path),
            }
            if forced_name:
                info["forced_tool_call"] = {"name": forced_name, "arguments": "".join(forced_args)}
            yield "", info

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        if kwargs.get("tools") and kwargs.get("tool_choice") != "none":
            yield from self._stream_with_tools(messages, stop, run_manager, kwargs)
            return
        for text, info in self._raw_stream(messages, stop, kwargs):
            if info:
                chunk = ChatGenerationChunk(
                    message=AIMessageChunk(
                        content="",
                        usage_metadata=info["usage"],
                        response_metadata={k: v for k, v in info.items() if k != "usage"},
                        chunk_position="last",
                    )
                )
            else:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=text))
                if run_manager:
                    run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk

    def _stream_with_tools(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None,
        run_manager: CallbackManagerForLLMRun | None,
        kwargs: dict[str, Any],
    ) -> Iterator[ChatGenerationChunk]:
        """Stream prose as it comes; tool calls arrive whole in the last chunk."""
        splitter = _ToolCallSplitter([t["function"]["name"] for t in kwargs["tools"]])
        for text, info in self._raw_stream(messages, stop, kwargs):
            if not info:
                prose = splitter.feed(text)
                if prose:
                    chunk = ChatGenerationChunk(message=AIMessageChunk(content=prose))
                    if run_manager:
                        run_manager.on_llm_new_token(prose, chunk=chunk)
                    yield chunk
                continue
            tail, calls, invalid = splitter.finish()
            chunks = [tool_call_chunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"],
                                      index=i) for i, c in enumerate(calls)]
            chunks += [tool_call_chunk(name=c["name"], args=c["args"], id=c["id"],
                                       index=len(chunks) + i) for i, c in enumerate(invalid)]
            forced = info.pop("forced_tool_call", None)
            if forced:
                chunks.append(tool_call_chunk(name=forced["name"], args=forced["arguments"],
                                              id=f"call_{uuid.uuid4().hex[:24]}",
                                              index=len(chunks)))
            meta = {k: v for k, v in info.items() if k != "usage"}
            if chunks:
                meta["finish_reason"] = "tool_calls"
            yield ChatGenerationChunk(message=AIMessageChunk(
                content=tail, tool_call_chunks=chunks, usage_metadata=info["usage"],
                response_metadata=meta, chunk_position="last",
            ))

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        if kwargs.get("tools") and kwargs.get("tool_choice") != "none":
            final: Any = None
            for chunk in self._stream_with_tools(messages, stop, None, kwargs):
                final = chunk.message if final is None else final + chunk.message
            has_calls = bool(final.tool_calls or final.invalid_tool_calls)
            message = AIMessage(
                content=final.text.strip() if has_calls else final.text,
                tool_calls=final.tool_calls,
                invalid_tool_calls=final.invalid_tool_calls,
                usage_metadata=final.usage_metadata, response_metadata=final.response_metadata,
            )
            return ChatResult(generations=[ChatGeneration(message=message)])
        texts: list[str] = []
        info: dict[str, Any] = {}
        for text, meta in self._raw_stream(messages, stop, kwargs):
            if meta:
                info = meta
            else:
                texts.append(text)
        message = AIMessage(
            content="".join(texts),
            usage_metadata=info.get("usage"),
            response_metadata={k: v for k, v in info.items() if k != "usage"},
        )
        return ChatResult(generations=[ChatGeneration(message=message)])
