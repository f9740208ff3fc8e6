"""The parameter-efficient methods ``appkit finetune`` trains, each a peft config under a name.

===============  ==========================================  ======================================
method           what is trained                             in a GGUF (``appkit finetune export``)
===============  ==========================================  ======================================
lora             low-rank ``B A`` on the projections          merged, or a GGUF LoRA adapter
ia3              one scale per ``k``/``v`` output and per     merged (``W * scale``)
                 ``down_proj`` input
prompt-tuning    ``virtual_tokens`` soft-prompt embeddings    no: served through transformers
prefix-tuning    ``virtual_tokens`` keys and values per layer no: served through transformers
===============  ==========================================  ======================================

GGUF has no place for soft prompts or per-layer prefixes, and llama.cpp cannot apply them, so runs
of the last two are used through transformers (:func:`load_tuned`); export refuses them.

New methods register a builder: ``register_peft_method("name", builder, gguf=False)``, where
``builder(model, r=..., alpha=..., dropout=..., virtual_tokens=..., targets=...)`` returns a peft
config, as peft itself registers its methods.

Example:
    >>> from finetune.peft_methods import PEFT_METHODS, gguf_exportable
    >>> PEFT_METHODS
    ('lora', 'ia3', 'prompt-tuning', 'prefix-tuning')
    >>> gguf_exportable("prefix-tuning")
    False
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appkit.errors import AppkitError
from appkit.lazy import require

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
IA3_TARGETS = ("k_proj", "v_proj", "down_proj")
IA3_FEEDFORWARD = ("down_proj",)

Builder = Callable[..., Any]
_BUILDERS: dict[str, Builder] = {}
_GGUF: dict[str, bool] = {}


def register_peft_method(name: str, builder: Builder, *, gguf: bool) -> None:
    """Register a PEFT method: ``builder(model, **settings)`` returns its peft config.

    Args:
        name: the method name (``appkit finetune NAME``, ``finetune.method``).
        builder: makes the peft config for a model.
        gguf: whether a trained adapter can be written into a GGUF.
    """
    _BUILDERS[name] = builder
    _GGUF[name] = gguf


def _present(model: Any, names: tuple[str, ...]) -> list[str]:
    have = {n.rsplit(".", 1)[-1] for n, _ in model.named_modules()}
    return [t for t in names if t in have]


def _lora(model: Any, *, r: int = 8, alpha: int = 16, dropout: float = 0.0,
          targets: tuple[str, ...] = LORA_TARGETS, **_: Any) -> Any:
    peft = require("peft", extra="finetune")
    found = _present(model, tuple(targets))
    if not found:
        raise AppkitError(f"none of the LoRA targets {', '.join(targets)} exist in this model; "
                          "pass --targets with its projection names")
    return peft.LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=found,
                           bias="none", task_type="CAUSAL_LM")


def _ia3(model: Any, **_: Any) -> Any:
    peft = require("peft", extra="finetune")
    found = _present(model, IA3_TARGETS)
    if not found:
        raise AppkitError(f"IA3 scales {', '.join(IA3_TARGETS)}; this model has none of them")
    return peft.IA3Config(target_modules=found,
                          feedforward_modules=[t for t in found if t in IA3_FEEDFORWARD],
                          task_type="CAUSAL_LM")


def _prompt(model: Any, *, virtual_tokens: int = 20, **_: Any) -> Any:
    peft = require("peft", extra="finetune")
    # start from embeddings of random vocabulary tokens (Lester et al. 2021 found this better than
    # a random init): the soft prompt then has the scale of real inputs, also for Gemma, whose
    # embedding layer multiplies by sqrt(hidden) and whose soft prompts bypass that layer
    return peft.PromptTuningConfig(num_virtual_tokens=virtual_tokens, task_type="CAUSAL_LM",
                                   prompt_tuning_init="SAMPLE_VOCAB")


def _prefix(model: Any, *, virtual_tokens: int = 20, **_: Any) -> Any:
    peft = require("peft", extra="finetune")
    return peft.PrefixTuningConfig(num_virtual_tokens=virtual_tokens, task_type="CAUSAL_LM")


register_peft_method("lora", _lora, gguf=True)
register_peft_method("ia3", _ia3, gguf=True)
register_peft_method("prompt-tuning", _prompt, gguf=False)
register_peft_method("prefix-tuning", _prefix, gguf=False)
PEFT_METHODS = tuple(_BUILDERS)
# starting peak learning rates (the orders of magnitude peft's examples use): a soft prompt or an
# IA3 scale vector is a few thousand numbers and needs far larger steps than LoRA or full weights
DEFAULT_LR = {"lora": 2e-4, "ia3": 3e-3, "prompt-tuning": 3e-2, "prefix-tuning": 1e-2,
              "full": 2e-5}


def is_peft(method: str) -> bool:
    """Whether ``method`` trains a peft adapter (everything but ``full``)."""
    return method in _BUILDERS


def gguf_exportable(method: str) -> bool:
    """Whether a run of ``method`` can be written into a GGUF (``full`` always can)."""
    return _GGUF.get(method, method == "full")


def peft_config(method: str, model: Any, **settings: Any) -> Any:
    """The peft config of ``method`` for ``model`` (adapting only the projections it has).

    Args:
        method: a registered method name.
        model: the base model.
        **settings: ``r``, ``alpha``, ``dropout``, ``virtual_tokens``, ``targets``.

    Raises:
        AppkitError: an unknown method, or none of its projections exist in the model.
    """
    if method not in _BUILDERS:
        raise AppkitError(f"unknown PEFT method '{method}'; use one of {', '.join(_BUILDERS)}")
    return _BUILDERS[method](model, **settings)


def wrap(model: Any, method: str, **settings: Any) -> Any:
    """Add a fresh adapter of ``method`` to ``model`` (a peft model comes back)."""
    peft = require("peft", extra="finetune")
    return peft.get_peft_model(model, peft_config(method, model, **settings))


def load_tuned(run: Any, *, log: Callable[[str], None] = print) -> tuple[Any, Any]:
    """A finished PEFT run as a transformers model with its adapter, and its tokenizer.

    This is how prompt- and prefix-tuned runs are used (GGUF cannot hold them)::

        from appkit.models.transformers_chat import generate_new_tokens

        model, tokenizer = load_tuned("my-run")
        ids = tokenizer("Question: …", return_tensors="pt").input_ids
        new = generate_new_tokens(model, ids, ids.new_ones(ids.shape), max_new_tokens=32)
        print(tokenizer.decode(new[0]))

    (``generate_new_tokens``, not ``model.generate``: through peft's own generation hook a prefix
    is ignored and a soft prompt fed again at every step.)

    Args:
        run: a :class:`~finetune.runs.Run` or its name.
        log: where progress lines go.

    Raises:
        AppkitError: not a PEFT run, or it has no final adapter.
    """
    from finetune.runs import Run

    run = run if isinstance(run, Run) else Run.open(run)
    method = run.info.get("method", "lora")
    if not is_peft(method):
        raise AppkitError(f"run '{run.name}' is a {method} run, not a PEFT adapter")
    if not (run.final_dir / "adapter_config.json").exists():
        raise AppkitError(f"run '{run.name}' has no final adapter ({run.info.get('status')})")
    transformers = require("transformers", extra="finetune")
    peft = require("peft", extra="finetune")
    hf_dir = Path(run.info["hf_dir"])
    base = transformers.AutoModelForCausalLM.from_pretrained(os.fspath(hf_dir), dtype="float32")
    tokenizer = transformers.AutoTokenizer.from_pretrained(os.fspath(hf_dir))
    model = peft.PeftModel.from_pretrained(base, os.fspath(run.final_dir))
    model.eval()
    log(f"loaded {run.name} ({method}) over {hf_dir.name} with transformers")
    return model, tokenizer
