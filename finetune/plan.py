"""``appkit plan``: will it fit, how long will it take, and should I prompt, tune or pretrain?

For a model (a catalogue name, a ``.gguf`` file, or a folder or ``config.json`` of a transformers
model) and a data size, :func:`make_plan` works out:

* **Parameters** ``P``: a GGUF's tensors summed exactly; a transformers config by the formulas in
  :func:`count_params` (llama-family decoders and BERT), else by instantiating it on torch's
  ``meta`` device (no memory, no weights).
* **Memory to run** at fp32/fp16/int8/int4: ``P x bytes per weight`` (4, 2, 1, 0.5) plus the KV
  cache ``2 (K and V) x layers x n_ctx x kv_heads x head_dim x bytes`` at the profile's
  ``chat.n_ctx``; the cache is fp32 for fp32 weights and fp16 otherwise (llama.cpp's default).
  Quantized GGUF files add block scales (Q4_K_M is about 4.8 bits per weight, not 4).
* **Memory to train** (float32, AdamW, as ``appkit finetune`` trains): weights ``4P``; for the
  trainable parameters ``T`` gradients ``4T`` and the two Adam moments ``8T`` (full fine-tuning:
  ``T = P``, so ``16P``); plus activations kept for the backward pass, estimated per layer as
  ``4 bytes x b x s x (6h + 2 q_dim + 4 kv_dim + 4 ffn) + 4 bytes x 2 b heads s^2`` (norms,
  projections, MLP and attention scores and probabilities) and ``4 bytes x 3 b s vocab`` for the
  logits, their float32 log-softmax and its gradient, plus :data:`RUNTIME_BYTES` for the Python,
  torch and transformers process itself. Batch ``b``, sequence ``s`` (``s`` plus the virtual tokens
  for prompt tuning). Every method backpropagates through all layers, so all keep the activations.
* **Trainable parameters** of LoRA (rank ``finetune.lora_r``, all seven projections:
  ``r x (in + out)`` each), IA3 (one scale per output of ``k``/``v`` and per input of ``down``),
  prompt tuning (``virtual_tokens x h``) and prefix tuning
  (``virtual_tokens x 2 x layers x kv_dim``).
* **Tokens and FLOPs**: compute-optimal pre-training data is about 20 tokens per parameter
  (Hoffmann et al. 2022); training costs about ``6 x P x tokens`` FLOPs (forward 2, backward 4).
* **Time on this machine**: a micro-benchmark builds the model's own architecture (random weights:
  the arithmetic is the same) with transformers on the device training would use and times a
  few AdamW steps of full fine-tuning, LoRA and the profile's PEFT method at the planned batch and
  sequence length (after one warm-up step). Tokens per second from those steps give the time of
  each approach; DPO (RLHF) on LoRA trains on every token of the chosen and rejected answers and
  also runs the frozen reference model forward over them (a forward is about a third of a
  training step), so ``4/3`` of LoRA's time on the same tokens. ``--no-measure`` skips the
  benchmark and leaves the times empty.
* **FLOPs**: ``6 P`` per token for full fine-tuning and pre-training; ``4 P`` for PEFT (forward 2,
  backward through the activations 2, no weight gradients of the frozen base); ``6 P`` for DPO
  (PEFT's 4 plus the reference forward's 2).

Example:
    >>> from finetune.plan import ModelShape, make_plan
    >>> shape = ModelShape(name="toy", architecture="llama", params=1_000_000, layers=2,
    ...                    hidden=64, ffn=256, heads=4, kv_heads=4, head_dim=16, vocab=1000,
    ...                    context=512)
    >>> plan = make_plan(shape, tokens=50_000, measure=False)
    >>> plan.compute_optimal_tokens
    20000000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from appkit.errors import AppkitError
from appkit.lazy import require
from finetune.peft_methods import peft_config

BYTES = {"fp32": 4.0, "fp16": 2.0, "int8": 1.0, "int4": 0.5}
TOKENS_PER_PARAM = 20
# a Python process with torch, transformers and peft imported, before any model: ru_maxrss was
# 456 MB here (torch 2.13 CPU, transformers 5.24, peft 0.21)
RUNTIME_BYTES = 450 * 2**20
METHODS = ("full", "lora", "ia3", "prompt-tuning", "prefix-tuning")
# decoders whose parameters :func:`count_params` computes: q/k/v/o attention and a gated MLP
LLAMA_FAMILY = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gemma2", "gemma3_text", "gemma3",
                "smollm3", "olmo2", "granite")
# the GGUF architectures transformers builds for the micro-benchmark under another name
GGUF_TO_HF = {"gemma3": "gemma3_text"}


REQUIRED_CONFIG_KEYS = {"model_type": "architecture", "hidden_size": "embedding width",
                        "num_hidden_layers": "layer count", "num_attention_heads": "head count",
                        "vocab_size": "vocabulary", "intermediate_size": "MLP width"}


class PlanError(AppkitError):
    """A model the planner cannot size; the message names what is missing."""


@dataclass(frozen=True)
class ModelShape:
    """What the planner needs to know about a model.

    Attributes:
        name: what the user called it.
        architecture: ``llama``, ``gemma3``, ``bert``… (GGUF ``general.architecture`` or HF
            ``model_type``).
        params: the parameter count.
        layers: transformer blocks.
        hidden: the embedding width ``h``.
        ffn: the MLP width.
        heads: attention heads.
        kv_heads: key/value heads (fewer than ``heads`` with grouped-query attention).
        head_dim: width of one head.
        vocab: vocabulary size.
        context: the longest context the model was trained for.
        decoder: whether it generates (and so keeps a KV cache).
        file_bytes: the size of the file it came from (a quantized GGUF), 0 when not a file.
        config: the transformers config (a dict) used to build it for the micro-benchmark.
        gguf_path: the GGUF it came from, if any.

    Example:
        >>> from finetune.plan import ModelShape
        >>> ModelShape("toy", "llama", 10, 1, 4, 8, 2, 2, 2, 10, 64).kv_dim
        4
    """

    name: str
    architecture: str
    params: int
    layers: int
    hidden: int
    ffn: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    context: int
    decoder: bool = True
    file_bytes: int = 0
    config: dict = field(default_factory=dict, compare=False, repr=False)
    gguf_path: str = ""

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim


# --- sizing a model ------------------------------------------------------------------------------


def _need(data: dict, keys: dict[str, str], source: str) -> None:
    missing = [f"{k} ({why})" for k, why in keys.items() if data.get(k) in (None, "", [])]
    if missing:
        raise PlanError(f"cannot size {source}: it does not say " + ", ".join(missing))


def count_params(config: dict) -> int:
    """The parameter count of a transformers config, by formula.

    Llama-family decoders (``model_type`` in :data:`LLAMA_FAMILY`): embeddings ``V h``; per layer
    attention ``h q + 2 h kv + q h`` (plus q/k/v biases for Qwen2, all four with
    ``attention_bias``), a gated MLP ``3 h f``, RMSNorm weights (2 per layer, 4 for Gemma 2/3,
    plus per-head q/k norms for Qwen3 and Gemma 3); a final norm; an output matrix ``V h`` unless
    the embeddings are tied. BERT (``BertModel`` with its pooler): word, position and type
    embeddings with a LayerNorm; per layer four ``h x h`` projections with biases, a LayerNorm,
    ``h f + f`` and ``f h + h`` and another LayerNorm; the pooler ``h^2 + h``.

    Args:
        config: the config as a dict (``config.json``, or ``PretrainedConfig.to_dict()``).

    Returns:
        The number of parameters.

    Raises:
        PlanError: an architecture without a formula, or a key the formula needs is missing.

    Example:
        >>> from finetune.plan import count_params
        >>> count_params({"model_type": "llama", "vocab_size": 10, "hidden_size": 4,
        ...               "intermediate_size": 8, "num_hidden_layers": 1,
        ...               "num_attention_heads": 2, "tie_word_embeddings": True})
        212
    """
    kind = config.get("model_type", "")
    source = f"the '{kind or 'unknown'}' config"
    _need(config, {"vocab_size": "vocabulary", "hidden_size": "embedding width",
                   "intermediate_size": "MLP width", "num_hidden_layers": "layer count",
                   "num_attention_heads": "head count"}, source)
    v, h, f = config["vocab_size"], config["hidden_size"], config["intermediate_size"]
    n, a = config["num_hidden_layers"], config["num_attention_heads"]
    if kind == "bert":
        emb = v * h + config.get("max_position_embeddings", 512) * h \
            + config.get("type_vocab_size", 2) * h + 2 * h
        layer = 4 * (h * h + h) + 2 * h + (h * f + f) + (f * h + h) + 2 * h
        return emb + n * layer + h * h + h
    if kind not in LLAMA_FAMILY:
        raise PlanError(f"no parameter formula for model_type '{kind}' (known: "
                        f"{', '.join(('bert', *LLAMA_FAMILY))}); install the finetune extra to "
                        "count it by building the model on torch's meta device")
    hd = config.get("head_dim") or h // a
    kv = (config.get("num_key_value_heads") or a) * hd
    q = a * hd
    attn = h * q + 2 * h * kv + q * h
    if kind == "qwen2":
        attn += q + 2 * kv
    elif config.get("attention_bias"):
        attn += q + 2 * kv + h
    mlp = 3 * h * f + ((2 * f + h) if config.get("mlp_bias") else 0)
    norms = 4 * h if kind in ("gemma2", "gemma3_text", "gemma3") else 2 * h
    if kind in ("qwen3", "gemma3_text", "gemma3"):
        norms += 2 * hd
    tied = config.get("tie_word_embeddings", True)
    return v * h + n * (attn + mlp + norms) + h + (0 if tied else v * h)


def _meta_params(config: dict) -> int:
    """Count parameters by building the model on the meta device (no memory is used)."""
    torch = require("torch", extra="finetune")
    transformers = require("transformers", extra="finetune")
    cfg = transformers.AutoConfig.for_model(**config)
    with torch.device("meta"):
        try:
            model = transformers.AutoModelForCausalLM.from_config(cfg)
        except ValueError:
            model = transformers.AutoModel.from_config(cfg)
    return sum(p.numel() for p in model.parameters())


def shape_from_config(config: dict, *, name: str = "") -> ModelShape:
    """A :class:`ModelShape` from a transformers config dict.

    Raises:
        PlanError: a key the planner needs is missing (each one is named).
    """
    name = name or config.get("_name_or_path") or config.get("model_type", "model")
    _need(config, REQUIRED_CONFIG_KEYS, f"'{name}'")
    try:
        params = count_params(config)
    except PlanError:
        if config.get("model_type") in ("bert",) or not _has_torch():
            raise
        params = _meta_params(config)
    h, a = config["hidden_size"], config["num_attention_heads"]
    kind = config["model_type"]
    return ModelShape(
        name=name, architecture=kind, params=int(params), layers=config["num_hidden_layers"],
        hidden=h, ffn=config["intermediate_size"], heads=a,
        kv_heads=config.get("num_key_value_heads") or a,
        head_dim=config.get("head_dim") or h // a, vocab=config["vocab_size"],
        context=config.get("max_position_embeddings") or 0,
        decoder=kind not in ("bert", "roberta", "xlm-roberta", "distilbert"),
        config=dict(config))


def _has_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _gguf_value(reader: Any, key: str) -> Any:
    f = reader.fields.get(key)
    if f is None:
        return None
    value = f.contents()
    return value[0] if isinstance(value, list) and value and key.endswith("_length") else value


def shape_from_gguf(path: str | os.PathLike, *, name: str = "") -> ModelShape:
    """A :class:`ModelShape` from a GGUF file's metadata; parameters are its tensors summed.

    Raises:
        PlanError: the file is not a GGUF, or a metadata key the planner needs is missing.
    """
    gguf = require("gguf", extra="finetune")
    path = Path(path)
    try:
        reader = gguf.GGUFReader(str(path))
    except (ValueError, OSError) as exc:
        raise PlanError(f"cannot read {path} as a GGUF file: {exc}") from None
    arch = _gguf_value(reader, "general.architecture")
    if not arch:
        raise PlanError(f"cannot size {path}: it has no 'general.architecture' key")
    keys = {k: _gguf_value(reader, f"{arch}.{k}") for k in (
        "block_count", "embedding_length", "feed_forward_length", "attention.head_count",
        "attention.head_count_kv", "attention.key_length", "context_length", "vocab_size")}
    if keys["vocab_size"] is None and "tokenizer.ggml.tokens" in reader.fields:
        keys["vocab_size"] = len(reader.fields["tokenizer.ggml.tokens"].data)
    missing = [f"{arch}.{k}" for k in ("block_count", "embedding_length", "feed_forward_length",
                                       "attention.head_count", "context_length", "vocab_size")
               if keys[k] is None]
    if missing:
        raise PlanError(f"cannot size {path}: its metadata lacks " + ", ".join(missing))
    params = sum(int(t.n_elements) for t in reader.tensors)
    if not params:
        raise PlanError(f"cannot size {path}: it holds no tensors")
    h, a = int(keys["embedding_length"]), int(keys["attention.head_count"])
    hd = int(keys["attention.key_length"] or h // a)
    kv = int(keys["attention.head_count_kv"] or a)
    ffn = int(keys["feed_forward_length"])
    return ModelShape(
        name=name or path.name, architecture=str(arch), params=params,
        layers=int(keys["block_count"]), hidden=h, ffn=ffn, heads=a, kv_heads=kv, head_dim=hd,
        vocab=int(keys["vocab_size"]), context=int(keys["context_length"]),
        file_bytes=path.stat().st_size, gguf_path=str(path),
        config=_hf_config_from_shape(str(arch), h, ffn, a, kv, hd, int(keys["block_count"]),
                                     int(keys["vocab_size"]),
                                     tied=not any(t.name == "output.weight"
                                                  for t in reader.tensors)))


def _hf_config_from_shape(arch: str, h: int, ffn: int, a: int, kv: int, hd: int, layers: int,
                          vocab: int, *, tied: bool) -> dict:
    """The transformers config that builds the same architecture (for the micro-benchmark)."""
    return {"model_type": GGUF_TO_HF.get(arch, arch), "hidden_size": h, "intermediate_size": ffn,
            "num_attention_heads": a, "num_key_value_heads": kv, "head_dim": hd,
            "num_hidden_layers": layers, "vocab_size": vocab, "tie_word_embeddings": tied}


def _read_hf_config(path: Path) -> dict:
    file = path / "config.json" if path.is_dir() else path
    if not file.exists():
        raise PlanError(f"{path} has no config.json; give a catalogue name, a .gguf file or a "
                        "transformers model folder")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PlanError(f"cannot read {file}: {exc}") from None
    if not isinstance(config, dict):
        raise PlanError(f"{file} is not a JSON object")
    if "text_config" in config and "hidden_size" not in config:  # multimodal wrappers
        config = {**config["text_config"], "model_type": config["text_config"].get(
            "model_type", config.get("model_type", ""))}
    _need(config, REQUIRED_CONFIG_KEYS, str(file))
    if _has_torch():
        try:  # fill in the class defaults (tied embeddings…) that save_pretrained leaves out
            transformers = require("transformers", extra="finetune")
            config = {**transformers.AutoConfig.for_model(**config).to_dict(), **config}
        except (ValueError, TypeError, KeyError):
            pass
    return config


def resolve_shape(model: str) -> ModelShape:
    """Size a catalogue name, a ``.gguf`` path, or a transformers folder or ``config.json``.

    Raises:
        PlanError: the model cannot be found or sized (the message names what is missing).
    """
    path = Path(model).expanduser()
    if path.suffix == ".gguf" and path.is_file():
        return shape_from_gguf(path)
    if path.exists():
        return shape_from_config(_read_hf_config(path), name=str(model))
    from appkit.errors import ModelNotAvailableError
    from appkit.models.catalogue import get_spec, resolve_model

    try:
        spec = get_spec(model)
    except ModelNotAvailableError as exc:
        raise PlanError(f"'{model}' is neither a catalogue model, a .gguf file nor a folder "
                        f"with config.json ({exc})") from None
    if spec.format == "openai":
        raise PlanError(f"'{model}' is a remote endpoint; its size is unknown")
    spec, file = resolve_model(model)
    if file.suffix == ".gguf":
        return shape_from_gguf(file, name=model)
    return shape_from_config(_read_hf_config(file), name=model)


# --- tokens of the data --------------------------------------------------------------------------


def count_tokens(path: str | os.PathLike, shape: ModelShape | None = None) -> tuple[int, str]:
    """The tokens in a data file, and how they were counted.

    JSONL rows count their string fields; other files count their text. A GGUF model's own
    tokenizer counts them when llama-cpp-python is installed (``vocab_only``: no weights are read),
    a transformers folder's tokenizer when it has one; otherwise characters / 4.

    Raises:
        PlanError: the file cannot be read.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise PlanError(f"cannot read the data file {path}: {exc}") from None
    if path.suffix == ".jsonl":
        parts = []
        for line in text.splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                parts.append(line)
                continue
            if isinstance(row, dict):
                parts += [v for v in row.values() if isinstance(v, str)]
        text = "\n".join(parts)
    if shape is not None and shape.gguf_path:
        try:
            llama_cpp = require("llama_cpp", extra="chat", package="llama-cpp-python")
            llm = llama_cpp.Llama(model_path=shape.gguf_path, vocab_only=True, verbose=False)
            return len(llm.tokenize(text.encode("utf-8"), add_bos=False)), "the model's tokenizer"
        except Exception:  # noqa: BLE001 - counting falls back to an estimate
            pass
    if shape is not None and Path(shape.name).is_dir():
        try:
            transformers = require("transformers", extra="finetune")
            tok = transformers.AutoTokenizer.from_pretrained(shape.name)
            return len(tok(text, add_special_tokens=False)["input_ids"]), "the model's tokenizer"
        except Exception:  # noqa: BLE001
            pass
    return math.ceil(len(text) / 4), "estimated: characters / 4"


# --- memory and compute --------------------------------------------------------------------------


def kv_cache_bytes(shape: ModelShape, n_ctx: int, bytes_per_value: float) -> int:
    """``2 x layers x n_ctx x kv_heads x head_dim x bytes`` (0 for encoders)."""
    if not shape.decoder:
        return 0
    return int(2 * shape.layers * n_ctx * shape.kv_dim * bytes_per_value)


def inference_memory(shape: ModelShape, n_ctx: int) -> dict[str, dict[str, int]]:
    """Bytes to run the model at each precision: weights, KV cache and their total."""
    out = {}
    for precision, b in BYTES.items():
        weights = int(shape.params * b)
        kv = kv_cache_bytes(shape, n_ctx, 4.0 if precision == "fp32" else 2.0)
        out[precision] = {"weights": weights, "kv_cache": kv, "total": weights + kv}
    return out


def trainable_params(shape: ModelShape, method: str, *, r: int = 8,
                     virtual_tokens: int = 20) -> int:
    """Parameters each method trains (see the module docstring for the formulas).

    Raises:
        PlanError: an unknown method.
    """
    h, f, n = shape.hidden, shape.ffn, shape.layers
    if method == "full":
        return shape.params
    if method == "lora":
        per_layer = (h + shape.q_dim) + 2 * (h + shape.kv_dim) + (shape.q_dim + h) + 3 * (h + f)
        return n * r * per_layer
    if method == "ia3":
        return n * (2 * shape.kv_dim + f)
    if method == "prompt-tuning":
        return virtual_tokens * h
    if method == "prefix-tuning":
        return virtual_tokens * 2 * n * shape.kv_dim
    raise PlanError(f"unknown method '{method}'; use one of {', '.join(METHODS)}")


def activation_bytes(shape: ModelShape, batch: int, seq: int) -> int:
    """Activations float32 training keeps for the backward pass (an estimate; see the module)."""
    per_layer = batch * seq * (6 * shape.hidden + 2 * shape.q_dim + 4 * shape.kv_dim
                               + 4 * shape.ffn) + 2 * batch * shape.heads * seq * seq
    logits = 3 * batch * seq * shape.vocab
    return int(4 * (shape.layers * per_layer + logits))


def training_memory(shape: ModelShape, method: str, *, batch: int, seq: int, r: int = 8,
                    virtual_tokens: int = 20) -> dict[str, int]:
    """Bytes to train with ``method`` in float32 with AdamW, by part, and their total."""
    t = trainable_params(shape, method, r=r, virtual_tokens=virtual_tokens)
    extra = virtual_tokens if method == "prompt-tuning" else 0
    parts = {"weights": 4 * shape.params + (0 if method == "full" else 4 * t),
             "gradients": 4 * t, "optimizer": 8 * t,
             "activations": activation_bytes(shape, batch, seq + extra),
             "runtime": RUNTIME_BYTES}
    parts["total"] = sum(parts.values())
    return parts


# --- the micro-benchmark -------------------------------------------------------------------------


def measure_steps(shape: ModelShape, methods: tuple[str, ...] = ("full", "lora", "prompt-tuning"),
                  *, batch: int = 1, seq: int = 128, steps: int = 2, r: int = 8,
                  virtual_tokens: int = 20, threads: int = 0) -> dict[str, float]:
    """Seconds per AdamW step of each method on this machine, on the model's own architecture.

    The model is built from its config with random weights (the arithmetic is the same as with
    the trained ones), in float32 on the device ``appkit finetune`` would train on (a GPU when
    torch sees one, else the CPU), one warm-up step then ``steps`` timed steps.

    Raises:
        PlanError: the model is not a decoder transformers can build.
    """
    torch = require("torch", extra="finetune")
    transformers = require("transformers", extra="finetune")
    peft = require("peft", extra="finetune")
    if not shape.decoder or not shape.config:
        raise PlanError(f"cannot time '{shape.name}': only decoder language models are measured")
    from finetune.trainer import pick_device

    device = pick_device()
    torch.set_num_threads(threads or os.cpu_count() or 1)
    try:
        cfg = transformers.AutoConfig.for_model(**shape.config)
    except (ValueError, KeyError) as exc:
        raise PlanError(f"transformers cannot build a '{shape.architecture}' model to time it "
                        f"({exc}); use --no-measure") from None
    out: dict[str, float] = {}
    for method in methods:
        torch.manual_seed(0)
        model = transformers.AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        if method != "full":
            model = peft.get_peft_model(model, peft_config(method, model, r=r,
                                                           virtual_tokens=virtual_tokens))
        model.to(device).train()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-5)
        ids = torch.randint(0, shape.vocab, (batch, seq), device=device)
        times = []
        for i in range(steps + 1):
            t0 = time.perf_counter()
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            if device == "cuda":
                torch.cuda.synchronize()
            if i:
                times.append(time.perf_counter() - t0)
        out[method] = sum(times) / len(times)
        del model, opt
    return out


# --- the plan ------------------------------------------------------------------------------------


@dataclass
class Plan:
    """Everything ``appkit plan`` prints.

    Example:
        >>> from finetune.plan import ModelShape, make_plan
        >>> shape = ModelShape("toy", "llama", 1_000_000, 2, 64, 256, 4, 4, 16, 1000, 512)
        >>> make_plan(shape, tokens=10**5, measure=False).recommendation
        'peft'
    """

    model: ModelShape
    data_tokens: int
    token_source: str
    n_ctx: int
    batch: int
    seq: int
    epochs: float
    peft_method: str
    lora_r: int
    virtual_tokens: int
    inference: dict[str, dict[str, int]]
    training: dict[str, dict[str, int]]
    trainable: dict[str, int]
    compute_optimal_tokens: int
    flops: dict[str, float]
    step_seconds: dict[str, float]
    measured: bool
    measure_note: str
    seconds: dict[str, float | None]
    memory_available: int
    recommendation: str
    reasons: list[str]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["model"].pop("config", None)
        data["approaches"] = self.approaches()
        return data

    def approaches(self) -> list[dict[str, Any]]:
        """The time-and-effort table, one row per approach."""
        peft = self.peft_method if self.peft_method != "full" else "lora"
        tr = self.training
        rows = [
            {"approach": "pre-training", "trainable": self.model.params,
             "tokens": self.compute_optimal_tokens, "flops": self.flops["pretrain"],
             "memory": tr["full"]["total"], "time_s": self.seconds["pretrain"],
             "changes": "architecture, tokenizer, every weight; needs a large domain corpus",
             "expertise": "high"},
            {"approach": "prompt engineering", "trainable": 0, "tokens": 0, "flops": 0.0,
             "memory": self.inference["int4"]["total"], "time_s": 0.0,
             "changes": "the prompt only (profile: prompt.system, template, examples)",
             "expertise": "low"},
            {"approach": f"prompt tuning / PEFT ({peft})", "trainable": self.trainable[peft],
             "tokens": self.data_tokens, "flops": self.flops["peft"],
             "memory": tr[peft]["total"], "time_s": self.seconds["peft"],
             "changes": "a small adapter or soft prompt; the base stays as it is",
             "expertise": "medium"},
            {"approach": "full fine-tuning", "trainable": self.model.params,
             "tokens": self.data_tokens, "flops": self.flops["full"],
             "memory": tr["full"]["total"], "time_s": self.seconds["full"],
             "changes": "every weight, on your task's data", "expertise": "medium"},
            {"approach": "RLHF (DPO on LoRA)", "trainable": self.trainable["lora"],
             "tokens": self.data_tokens, "flops": self.flops["dpo"],
             "memory": tr["lora"]["total"] + tr["lora"]["activations"],
             "time_s": self.seconds["dpo"],
             "changes": "adapter weights, from preference pairs (appkit finetune dpo)",
             "expertise": "medium-high"},
            {"approach": "compression (int4)", "trainable": 0, "tokens": 0, "flops": 0.0,
             "memory": self.inference["int4"]["total"], "time_s": None,
             "changes": f"weights {_mb(self.inference['fp16']['weights'])} -> "
                        f"{_mb(self.inference['int4']['weights'])} (no training; one pass)",
             "expertise": "medium"},
        ]
        return rows

    def render(self) -> str:
        m = self.model
        lines = [f"{m.name}: {m.architecture}, {_count(m.params)} parameters, {m.layers} layers, "
                 f"width {m.hidden}, {m.heads} heads ({m.kv_heads} KV), vocabulary {m.vocab}, "
                 f"context {m.context}" + (f", file {_mb(m.file_bytes)}" if m.file_bytes else ""),
                 f"data: {_count(self.data_tokens)} tokens ({self.token_source}) x "
                 f"{self.epochs:g} epoch(s); training batch {self.batch} x {self.seq} tokens",
                 "", f"memory to run (weights + KV cache at n_ctx {self.n_ctx}):"]
        for p, mem in self.inference.items():
            lines.append(f"  {p:<5} {_mb(mem['weights']):>10} + {_mb(mem['kv_cache']):>9} = "
                         f"{_mb(mem['total'])}")
        lines += ["", "memory to train (float32, AdamW; weights + grads + optimizer + "
                  "activations + runtime):"]
        for method, mem in self.training.items():
            lines.append(f"  {method:<14} {_count(self.trainable[method]):>8} trainable  "
                         f"{_mb(mem['total']):>10}  (activations {_mb(mem['activations'])})")
        lines += ["", f"compute-optimal pre-training data: {_count(self.compute_optimal_tokens)} "
                  f"tokens ({TOKENS_PER_PARAM}/parameter), {self.flops['pretrain']:.2e} FLOPs; "
                  f"fine-tuning on your data: {self.flops['full']:.2e} FLOPs (6 x P x tokens)"]
        if self.measured:
            lines.append("measured here: " + ", ".join(
                f"{k} {v:.2f} s/step" for k, v in self.step_seconds.items())
                + f" ({self.batch} x {self.seq} tokens)")
        else:
            lines.append(f"not measured ({self.measure_note}): times are left empty")
        lines += ["", f"{'approach':<34} {'trainable':>9} {'tokens':>8} {'memory':>10} "
                  f"{'time here':>11}  expertise"]
        for row in self.approaches():
            lines.append(f"{row['approach']:<34} {_count(row['trainable']):>9} "
                         f"{_count(row['tokens']):>8} {_mb(row['memory']):>10} "
                         f"{_duration(row['time_s']):>11}  {row['expertise']}: {row['changes']}")
        lines += ["", f"recommendation: {RECOMMENDATION_TEXT[self.recommendation]}"]
        lines += [f"  - {r}" for r in self.reasons]
        return "\n".join(lines)


RECOMMENDATION_TEXT = {
    "prompt": "prompt engineering (no training)",
    "peft": "parameter-efficient fine-tuning",
    "full": "full fine-tuning",
    "pretrain": "pre-training",
}


def _count(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(int(n))


def _mb(n: float) -> str:
    return f"{n / 2**30:.2f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB"


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if s >= size:
            return f"{s / size:.1f} {unit}"
    return f"{s:.0f} s"


def _available_memory() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except ImportError:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def make_plan(model: ModelShape | str, *, tokens: int = 0, token_source: str = "given",
              n_ctx: int = 4096, batch: int = 1, seq: int = 512, epochs: float = 1.0,
              method: str = "lora", lora_r: int = 8, virtual_tokens: int = 20,
              measure: bool = True, steps: int = 2, threads: int = 0,
              memory_available: int = 0) -> Plan:
    """Work out the plan for ``model`` and ``tokens`` of training data.

    Args:
        model: a :class:`ModelShape`, or a name for :func:`resolve_shape`.
        tokens: tokens in the user's data (one epoch).
        token_source: how they were counted (shown to the user).
        n_ctx: the context length to run at (the profile's ``chat.n_ctx``).
        batch: training examples per step.
        seq: training tokens per example.
        epochs: passes over the data.
        method: the PEFT method the user would use (the profile's ``finetune.method``).
        lora_r: LoRA rank (``finetune.lora_r``).
        virtual_tokens: soft-prompt length (``finetune.virtual_tokens``).
        measure: time a few training steps here (otherwise the times stay empty).
        steps: timed steps per method.
        threads: torch threads for the benchmark (0: every core).
        memory_available: bytes of memory to plan for (0: this machine's).

    Raises:
        PlanError: the model cannot be sized, or a bad number.
    """
    if tokens < 0 or batch < 1 or seq < 1 or epochs <= 0:
        raise PlanError("tokens must be >= 0, batch and sequence length >= 1, epochs > 0")
    shape = model if isinstance(model, ModelShape) else resolve_shape(model)
    peft = method if method != "full" else "lora"
    trainable = {m: trainable_params(shape, m, r=lora_r, virtual_tokens=virtual_tokens)
                 for m in METHODS}
    training = {m: training_memory(shape, m, batch=batch, seq=seq, r=lora_r,
                                   virtual_tokens=virtual_tokens) for m in METHODS}
    optimal = TOKENS_PER_PARAM * shape.params
    seen = tokens * epochs
    # frozen weights skip their weight gradients (2 of the 6), but not the backward pass through
    # the activations; DPO adds the reference model's forward (2)
    flops = {"pretrain": 6.0 * shape.params * optimal, "full": 6.0 * shape.params * seen,
             "peft": 4.0 * shape.params * seen, "dpo": 6.0 * shape.params * seen}
    step_seconds: dict[str, float] = {}
    note = "--no-measure" if not measure else ""
    if measure and not shape.decoder:
        note = "an encoder: only decoder language models are timed"
    elif measure:
        timed = tuple(dict.fromkeys(("full", "lora", peft)))
        step_seconds = measure_steps(shape, timed, batch=batch, seq=seq, steps=steps, r=lora_r,
                                     virtual_tokens=virtual_tokens, threads=threads)

    def per_token(m: str) -> float | None:
        return step_seconds[m] / (batch * seq) if m in step_seconds else None

    full_t, lora_t, peft_t = per_token("full"), per_token("lora"), per_token(peft)
    seconds = {"pretrain": full_t * optimal if full_t else None,
               "full": full_t * seen if full_t else None,
               "peft": peft_t * seen if peft_t else None,
               "dpo": lora_t * seen * 4 / 3 if lora_t else None}
    available = memory_available or _available_memory()
    rec, reasons = recommend(shape, tokens=seen, training=training, seconds=seconds,
                             available=available, peft=peft)
    return Plan(model=shape, data_tokens=tokens, token_source=token_source, n_ctx=n_ctx,
                batch=batch, seq=seq, epochs=epochs, peft_method=peft, lora_r=lora_r,
                virtual_tokens=virtual_tokens, inference=inference_memory(shape, n_ctx),
                training=training, trainable=trainable, compute_optimal_tokens=optimal,
                flops=flops, step_seconds=step_seconds, measured=bool(step_seconds),
                measure_note=note,
                seconds=seconds, memory_available=available, recommendation=rec,
                reasons=reasons)


MIN_TUNING_TOKENS = 20_000  # below this (about a hundred short examples) put them in the prompt
DAY = 86400.0


def recommend(shape: ModelShape, *, tokens: float, training: dict[str, dict[str, int]],
              seconds: dict[str, float | None], available: int,
              peft: str = "lora") -> tuple[str, list[str]]:
    """Prompt -> PEFT -> full fine-tune -> pretrain: the first step the data and machine justify.

    Returns:
        The recommendation (``prompt``, ``peft``, ``full`` or ``pretrain``) and its reasons.
    """
    reasons = [f"start with prompt engineering either way: it needs no training and gives the "
               f"baseline every tuned model must beat (appkit eval run)"]
    fits = {m: training[m]["total"] <= available for m in training}
    if tokens < MIN_TUNING_TOKENS:
        reasons.append(f"{_count(tokens)} tokens of data is too little to tune on (under "
                       f"{_count(MIN_TUNING_TOKENS)}); use the best rows as few-shot examples "
                       "(prompt.mode = \"few-shot\")")
        return "prompt", reasons
    if not fits[peft]:
        reasons.append(f"{peft} needs {_mb(training[peft]['total'])} but this machine has "
                       f"{_mb(available)}; shorten --seq-len or the batch, or pick a smaller model")
        return "prompt", reasons
    optimal = TOKENS_PER_PARAM * shape.params
    full_time = seconds.get("full")
    if tokens >= optimal and fits["full"]:
        reasons.append(f"{_count(tokens)} tokens is compute-optimal data for "
                       f"{_count(shape.params)} parameters ({TOKENS_PER_PARAM}/parameter); "
                       "pre-training is possible, but continued pre-training of this model on the "
                       "same data usually wins at the same cost")
        return "pretrain", reasons
    if tokens >= shape.params and fits["full"] and (full_time is None or full_time <= DAY):
        reasons.append(f"{_count(tokens)} tokens is at least as many as the model has parameters "
                       "(an adapter's capacity becomes the limit), full fine-tuning fits in "
                       f"{_mb(training['full']['total'])}"
                       + (f" and takes {_duration(full_time)} here" if full_time else ""))
        return "full", reasons
    why = [f"{_count(tokens)} tokens is enough to tune but far below "
           f"{_count(optimal)} (compute-optimal for pre-training)"]
    if not fits["full"]:
        why.append(f"full fine-tuning needs {_mb(training['full']['total'])}, more than this "
                   f"machine's {_mb(available)}")
    elif full_time is not None and full_time > DAY:
        why.append(f"full fine-tuning would take {_duration(full_time)} here")
    else:
        why.append(f"{peft} trains far fewer weights and needs "
                   f"{_mb(training[peft]['total'])} instead of {_mb(training['full']['total'])}, "
                   "with less forgetting")
    if seconds.get("peft") is not None:
        why.append(f"{peft} takes about {_duration(seconds['peft'])} on this machine")
    reasons += why
    return "peft", reasons


# --- the command ---------------------------------------------------------------------------------


def cmd_plan(args: argparse.Namespace) -> int:
    from appkit.config import find_profile

    profile = find_profile(getattr(args, "profile", None), create=False)
    ft = profile.finetune
    if args.tokens is not None and args.data:
        raise PlanError("give --tokens N or --data FILE, not both")
    shape = resolve_shape(args.model)
    if args.data:
        tokens, source = count_tokens(args.data, shape)
    else:
        tokens, source = (args.tokens or 0), "given" if args.tokens else "no data given"
    plan = make_plan(shape, tokens=tokens, token_source=source, n_ctx=profile.chat.n_ctx,
                     batch=args.batch_size, seq=args.seq_len, epochs=args.epochs,
                     method=args.method or ft.method, lora_r=ft.lora_r,
                     virtual_tokens=ft.virtual_tokens, measure=not args.no_measure,
                     steps=args.steps, threads=args.threads)
    if args.json:
        print(json.dumps(plan.to_dict(), indent=2, default=str))
    else:
        print(plan.render())
    return 0


def _token_count(text: str) -> int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of tokens, got '{text}'") from None
    if value < 0 or value != int(value):
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got '{text}'")
    return int(value)


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``plan`` to the ``appkit`` command line (entry point ``appkit.commands: plan``)."""
    p = subparsers.add_parser(
        "plan", parents=[common],
        help="will it fit, how long will it take: prompt, tune or pretrain?",
        description="Parameters, memory to run and to train, tokens, FLOPs and measured time on "
        "this machine for a model and a data size, with a recommendation.")
    p.add_argument("model", help="catalogue name, .gguf file, or transformers folder/config.json")
    p.add_argument("--tokens", type=_token_count, default=None,
                   help="tokens of training data (2000000, 2e6)")
    p.add_argument("--data", help="a data file (JSONL or text) whose tokens are counted")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=1, help="training examples per step")
    p.add_argument("--seq-len", type=int, default=512, help="training tokens per example")
    p.add_argument("--method", choices=METHODS, default=None,
                   help="the PEFT method to plan for (default: the profile's finetune.method)")
    p.add_argument("--no-measure", action="store_true",
                   help="skip the micro-benchmark (no times)")
    p.add_argument("--steps", type=int, default=2, help="timed training steps per method")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all)")
    p.set_defaults(func=cmd_plan)
