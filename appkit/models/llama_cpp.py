"""``LlamaCppChatModel``: a LangChain chat model over a GGUF file run by llama-cpp-python.

Loading is lazy (first call or :meth:`LlamaCppChatModel.warm_up`) and shared: every instance that
names the same file and context settings uses one loaded ``llama_cpp.Llama`` and one lock, so
concurrent callers (Streamlit reruns, server workers, ragas judges) never enter llama.cpp at once.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from collections.abc import Iterator
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
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field

from appkit.lazy import require


def default_threads() -> int:
    """Threads for llama.cpp: every core on small machines, half of them (the physical ones) above 4."""
    n = os.cpu_count() or 1
    return n if n <= 4 else n // 2


@dataclass
class _Loaded:
    llama: Any
    lock: threading.Lock
    has_chat_template: bool


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
            template = bool(llama.metadata.get("tokenizer.chat_template"))
            _loaded[key] = _Loaded(llama, threading.Lock(), template)
        return _loaded[key]


def _to_openai(message: BaseMessage) -> dict[str, Any]:
    if isinstance(message, SystemMessage):
        role = "system"
    elif isinstance(message, HumanMessage):
        role = "user"
    elif isinstance(message, AIMessage):
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


class LlamaCppChatModel(BaseChatModel):
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
    max_tokens: int = 256
    temperature: float = 0.1
    top_k: int = 40
    top_p: float = 0.95
    repeat_penalty: float = 1.1
    stop: list[str] = Field(default_factory=list)
    seed: int = 0

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
        params.update(kwargs)
        return params

    def _raw_stream(
        self, messages: list[BaseMessage], stop: list[str] | None, kwargs: dict[str, Any]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield (text piece, info) from llama.cpp while holding the model's lock."""
        loaded = self.warm_up()
        params = self._params(stop, dict(kwargs))
        with loaded.lock:
            llama = loaded.llama
            start = time.perf_counter()
            first: float | None = None
            pieces = 0
            finish = None
            if loaded.has_chat_template:
                stream = llama.create_chat_completion(
                    messages=[_to_openai(m) for m in messages], stream=True, **params
                )
                for chunk in stream:
                    choice = chunk["choices"][0]
                    finish = choice.get("finish_reason") or finish
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
            yield "", {
                "usage": usage,
                "finish_reason": finish,
                "time_to_first_token_s": (first or end) - start,
                "generation_s": end - (first or end),
                "model_name": self.model_name or os.path.basename(self.model_path),
            }

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
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

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
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
