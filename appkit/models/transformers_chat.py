"""``TransformersChatModel``: a LangChain chat model over a transformers folder, optionally with a
peft adapter on top.

This is the backend for tuned models that a GGUF cannot hold: soft prompts (prompt tuning) and
per-layer prefixes (prefix tuning), which llama.cpp cannot apply. It runs float32 on the CPU (or a
GPU when torch sees one), so it is slower than llama.cpp; GGUF models keep using
:class:`~appkit.models.llama_cpp.LlamaCppChatModel`.

Prompts are rendered as llama.cpp renders them: the tokenizer's chat template for chat models, the
plain completion prompt ending in ``Answer:`` (stopping at a blank line) for base models, so a model
tuned on the app's prompts sees the same text here. Loading is lazy and shared per process: every
instance naming the same folder and adapter uses one loaded model and one lock.
"""

from __future__ import annotations

import inspect
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.messages.ai import UsageMetadata
from langchain_core.outputs import ChatGeneration, ChatResult

from appkit.lazy import require
from appkit.models.generation import GenerationFields


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any
    device: str
    lock: threading.Lock


_loaded: dict[tuple[str, str], _Loaded] = {}
_loaded_lock = threading.Lock()


def load_transformers(model_path: str, adapter_path: str = "") -> _Loaded:
    """Load (once per process) a causal LM folder and, if given, a peft adapter over it."""
    key = (os.path.abspath(model_path), os.path.abspath(adapter_path) if adapter_path else "")
    with _loaded_lock:
        if key in _loaded:
            return _loaded[key]
        torch = require("torch", extra="finetune")
        transformers = require("transformers", extra="finetune")
        model = transformers.AutoModelForCausalLM.from_pretrained(model_path, dtype="float32")
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_path)
        if adapter_path:
            peft = require("peft", extra="finetune")
            model = peft.PeftModel.from_pretrained(model, adapter_path)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        model.to(device).eval()
        _loaded[key] = _Loaded(model, tokenizer, device, threading.Lock())
        return _loaded[key]


def generate_new_tokens(model: Any, ids: Any, mask: Any, **settings: Any) -> Any:
    """``model.generate`` over ``ids``, applying a prompt-learning adapter as it was trained.

    peft's generation hook for soft prompts and prefixes predates transformers 5's renamed cache
    argument: through ``PeftModel.generate`` a prefix is silently ignored and a soft prompt is fed
    again at every step. So for those adapters the base model generates here, given the prefix as
    its cache (behind placeholder tokens that stand for it, so positions match training) or the soft
    prompt's embeddings in front of the prompt's.

    Args:
        model: a transformers causal LM, or a peft model over one.
        ids: the prompt's token ids, shape (batch, length).
        mask: their attention mask.
        **settings: ``generate`` settings (``max_new_tokens``, ``do_sample``, ``pad_token_id``…).

    Returns:
        The new tokens only, shape (batch, new).

    Example:
        >>> new = generate_new_tokens(loaded.model, ids, mask, max_new_tokens=8)  # doctest: +SKIP
    """
    torch = require("torch", extra="finetune")
    config = getattr(model, "active_peft_config", None)
    if config is None or not getattr(config, "is_prompt_learning", False):
        return model.generate(input_ids=ids, attention_mask=mask, **settings)[:, ids.shape[-1]:]
    base = model.get_base_model()
    batch, virtual = ids.shape[0], config.num_virtual_tokens
    mask = torch.cat([torch.ones((batch, virtual), dtype=mask.dtype, device=mask.device), mask], 1)
    # placeholders stand for the virtual tokens, so positions match training and the output
    # (and a repetition penalty) sees the prompt's own tokens after them
    held = torch.full((batch, virtual), settings.get("pad_token_id") or 0,
                      dtype=ids.dtype, device=ids.device)
    full = torch.cat([held, ids], 1)
    if config.peft_type in ("PREFIX_TUNING", "CARTRIDGE"):
        cache = "cache" if "cache" in inspect.signature(base.forward).parameters \
            else "past_key_values"
        inputs = {cache: model.get_prompt(batch_size=batch)}
    else:
        embeds = model.word_embeddings(ids)
        prompts = model.get_prompt(batch_size=batch).to(embeds.dtype)
        inputs = {"inputs_embeds": torch.cat([prompts, embeds], 1)}
    out = base.generate(input_ids=full, attention_mask=mask, **inputs, **settings)
    return out[:, full.shape[-1]:]


class TransformersChatModel(GenerationFields, BaseChatModel):
    """A chat model over a transformers folder and an optional peft adapter.

    Args:
        model_path: the folder with ``config.json``, weights and tokenizer.
        adapter_path: a peft adapter folder (prompt tuning, prefix tuning, LoRA, IA3) or "".
        model_name: the catalogue name, reported in metadata.
        chat_template: render with the tokenizer's chat template (chat models); otherwise the
            plain completion prompt of base models.

    Example:
        >>> from appkit.models.transformers_chat import TransformersChatModel
        >>> llm = TransformersChatModel(model_path="base-hf", adapter_path="run/final")
        >>> llm.invoke("What did we decide?").content  # doctest: +SKIP
        'We moved the launch to May [1].'
    """

    model_path: str
    adapter_path: str = ""
    model_name: str = ""
    chat_template: bool = True

    @property
    def _llm_type(self) -> str:
        return "appkit-transformers"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name or os.path.basename(self.model_path),
                "adapter_path": self.adapter_path, "max_tokens": self.max_tokens,
                "temperature": self.temperature}

    def warm_up(self) -> _Loaded:
        """Load the model now (otherwise the first call does)."""
        return load_transformers(self.model_path, self.adapter_path)

    def get_num_tokens(self, text: str) -> int:
        """Count tokens with the model's own tokenizer."""
        return len(self.warm_up().tokenizer(text, add_special_tokens=False)["input_ids"])

    def _uses_template(self, tokenizer: Any) -> bool:
        return bool(self.chat_template and getattr(tokenizer, "chat_template", None))

    def render(self, messages: list[BaseMessage]) -> str:
        """The prompt text the model sees for ``messages``."""
        from appkit.models.llama_cpp import _to_openai, render_completion_prompt

        tokenizer = self.warm_up().tokenizer
        if self._uses_template(tokenizer):
            return tokenizer.apply_chat_template([_to_openai(m) for m in messages],
                                                 tokenize=False, add_generation_prompt=True)
        return render_completion_prompt(messages)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        torch = require("torch", extra="finetune")
        loaded = self.warm_up()
        prompt = self.render(messages)
        stops = list(self.stop) + list(stop or []) + list(kwargs.pop("stop", None) or [])
        templated = self._uses_template(loaded.tokenizer)
        if not templated:
            stops = stops or ["\n\n"]  # base models stop at a blank line, as with llama.cpp
        temperature = kwargs.get("temperature", self.temperature)
        settings: dict[str, Any] = {
            "max_new_tokens": kwargs.get("max_tokens", self.max_tokens),
            "repetition_penalty": kwargs.get("repeat_penalty", self.repeat_penalty),
            "do_sample": temperature > 0,
            "pad_token_id": loaded.tokenizer.pad_token_id or loaded.tokenizer.eos_token_id,
        }
        if temperature > 0:
            settings.update(temperature=temperature, top_k=kwargs.get("top_k", self.top_k),
                            top_p=kwargs.get("top_p", self.top_p))
        # the template writes its own BOS; a plain prompt gets the tokenizer's, as in training
        encoded = loaded.tokenizer(prompt, return_tensors="pt", add_special_tokens=not templated)
        ids = encoded["input_ids"].to(loaded.device)
        mask = encoded["attention_mask"].to(loaded.device)
        start = time.perf_counter()
        with loaded.lock, torch.no_grad():
            torch.manual_seed(kwargs.get("seed", self.seed))
            new = generate_new_tokens(loaded.model, ids, mask, **settings)[0]
        text = loaded.tokenizer.decode(new, skip_special_tokens=True)
        finish = "length" if len(new) >= settings["max_new_tokens"] else "stop"
        cut = [text.find(s) for s in stops if s and s in text]
        if cut:
            text, finish = text[:min(cut)], "stop"
        usage = UsageMetadata(input_tokens=int(ids.shape[-1]), output_tokens=int(len(new)),
                              total_tokens=int(ids.shape[-1] + len(new)))
        message = AIMessage(content=text, usage_metadata=usage, response_metadata={
            "finish_reason": finish, "generation_s": time.perf_counter() - start,
            "model_name": self.model_name or os.path.basename(self.model_path)})
        return ChatResult(generations=[ChatGeneration(message=message)])
