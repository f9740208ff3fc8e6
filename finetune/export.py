"""Export a run to GGUF, quantize it with llama.cpp, and register it in the model catalogue.

Two routes, both built on the base model's own GGUF (its metadata and tokenizer are copied as they
are, with the ``gguf`` package):

* ``merged``: every base tensor is dequantized, the trained change (LoRA ``B @ A * alpha / r``,
  IA3's ``W * (scale - 1)``, or the full fine-tune's difference to the base) is added under the
  GGUF tensor name (``gguf``'s tensor-name map gives HF -> GGUF names), and an F16 GGUF is written; llama.cpp's own quantizer
  (``llama_cpp.llama_model_quantize``) then makes Q8_0 or Q4_K_M from it.
* ``lora``: the adapter becomes a GGUF LoRA (``<tensor>.lora_a`` / ``.lora_b``, ``adapter.lora.alpha``)
  that llama-cpp-python applies with ``lora_path`` over the unchanged base GGUF.

A **pruned** model (``appkit finetune prune``) has fewer layers, heads or channels than its base,
so nothing can be added onto the base's tensors: :func:`write_model_gguf` keeps the base GGUF's
metadata and tokenizer, writes the hyperparameters pruning changed (layer count, MLP width, head
counts, head size, Gemma 3's per-layer sliding-window pattern) from the pruned model's config, and
writes every tensor from its weights; the same quantize, check and register steps follow
(:func:`export_pruned`, reached by ``appkit finetune export NAME``).

Prompt- and prefix-tuning runs are refused: GGUF cannot hold a soft prompt or per-layer prefixes
(they are used through transformers, :func:`finetune.peft_methods.load_tuned`).

Changes are added in GGUF space, so conventions that differ between transformers and llama.cpp
cancel out: Gemma's ``1 + weight`` norms need nothing, and only the row order of llama's q/k
projections (which llama.cpp permutes for its rotary layout) is applied to the change.

Everything is written into a ``.partial`` folder and each file is renamed into place only when
all are complete and loadable; the catalogue entries are written last. A full disk or a Ctrl-C leaves no half-written model
and no catalogue entry.

Example:
    >>> from finetune.export import QUANT_TYPES
    >>> sorted(QUANT_TYPES)
    ['f16', 'q4_k_m', 'q8_0']
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from appkit.errors import AppkitError
from appkit.lazy import require
from appkit.models.catalogue import ModelSpec, get_spec, register_model
from finetune.base import finetune_home
from finetune.peft_methods import gguf_exportable
from finetune.runs import Run
from finetune.vocab import VOCAB_MAP, read_vocab_map

QUANT_TYPES = {"f16": "LLAMA_FTYPE_MOSTLY_F16", "q8_0": "LLAMA_FTYPE_MOSTLY_Q8_0",
               "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M"}
Mode = Literal["merged", "lora", "transformers"]


class ExportError(AppkitError):
    """An export failed; nothing was registered."""


def exports_dir() -> Path:
    """Where exported models live."""
    return finetune_home() / "models"


# --- reading the trained change ----------------------------------------------------------------


@dataclass
class LoraPair:
    """One adapted projection: ``delta = b @ a * scale`` (HF layout, ``[out, in]``)."""

    a: Any  # numpy [r, in]
    b: Any  # numpy [out, r]
    scale: float


@dataclass
class TrainedChange:
    """What training changed, keyed by HF parameter name (``model.layers.0.self_attn.q_proj.weight``).

    Attributes:
        lora: adapted projections (LoRA runs).
        full: weight differences to the base (full runs).
        alpha: LoRA alpha; rank: LoRA rank.
    """

    lora: dict[str, LoraPair] = field(default_factory=dict)
    full: dict[str, Any] = field(default_factory=dict)
    alpha: float = 0.0
    rank: int = 0

    def delta(self, hf_name: str) -> Any | None:
        if hf_name in self.lora:
            p = self.lora[hf_name]
            return (p.b.astype("float32") @ p.a.astype("float32")) * p.scale
        return self.full.get(hf_name)


def read_change(run: Run, weights: Path | None = None) -> TrainedChange:
    """Read the run's final adapter or weights as a :class:`TrainedChange`.

    Raises:
        ExportError: the run has no final weights (not finished) or they are unreadable.
    """
    safetensors = require("safetensors.numpy", extra="finetune", package="safetensors")
    folder = weights or run.final_dir
    info = run.info
    if not folder.exists():
        latest = run.latest_checkpoint()
        hint = (f"; it stopped at step {info.get('step')} of {info.get('total_steps')}: resume it "
                f"with 'appkit finetune lora --resume {run.name}'") if latest else ""
        raise ExportError(f"run '{run.name}' has no final weights ({info.get('status')}){hint}")
    method = info.get("method", "lora")
    if not gguf_exportable(method):
        raise ExportError(
            f"run '{run.name}' trained by {method}: a GGUF cannot hold a soft prompt or per-layer "
            "prefixes and llama.cpp cannot apply them, so it is not exported to GGUF; serve it "
            f"through transformers with 'appkit finetune export {run.name} --mode transformers', "
            "or train lora or ia3 for a GGUF")
    if method == "ia3":
        return _ia3_change(run, folder, safetensors)
    if method == "lora":
        cfg = json.loads((folder / "adapter_config.json").read_text())
        alpha, rank = float(cfg["lora_alpha"]), int(cfg["r"])
        scale = alpha / (rank ** 0.5 if cfg.get("use_rslora") else rank)
        tensors = safetensors.load_file(str(folder / "adapter_model.safetensors"))
        change = TrainedChange(alpha=alpha, rank=rank)
        for key, a in tensors.items():
            if ".lora_A." not in key:
                continue
            b = tensors[key.replace(".lora_A.", ".lora_B.")]
            module = key.split(".lora_A.")[0].removeprefix("base_model.model.")
            change.lora[module + ".weight"] = LoraPair(a, b, scale)
        return change
    trained = safetensors.load_file(str(folder / "model.safetensors"))
    base = {}
    for f in Path(info["hf_dir"]).glob("*.safetensors"):
        base.update(safetensors.load_file(str(f)))
    change = TrainedChange()
    for key, value in trained.items():
        before = base.get(key)
        if before is None or before.shape != value.shape:
            continue
        diff = value.astype("float32") - before.astype("float32")
        if diff.any():
            change.full[key] = diff
    return change


def _ia3_change(run: Run, folder: Path, safetensors: Any) -> TrainedChange:
    """IA3 scales a projection's outputs (``k``, ``v``: ``[out, 1]``) or inputs (``down``:
    ``[1, in]``), so the merged weight is ``W * l`` by broadcasting and the change ``W * (l - 1)``."""
    scales = safetensors.load_file(str(folder / "adapter_model.safetensors"))
    base = {}
    for f in Path(run.info["hf_dir"]).glob("*.safetensors"):
        base.update(safetensors.load_file(str(f)))
    change = TrainedChange()
    for key, scale in scales.items():
        if ".ia3_l" not in key:
            continue
        hf = key.split(".ia3_l")[0].removeprefix("base_model.model.") + ".weight"
        if hf not in base:
            raise ExportError(f"run '{run.name}': IA3 scale {key} has no base weight {hf}")
        change.full[hf] = base[hf].astype("float32") * (scale.astype("float32") - 1.0)
    return change


# --- GGUF names and layouts ----------------------------------------------------------------------


def _field_value(reader: Any, key: str) -> Any:
    f = reader.fields.get(key)
    return None if f is None else f.contents()


def hf_to_gguf_names(reader: Any, hf_names: Sequence[str], *, in_base: bool = True
                     ) -> dict[str, str]:
    """Map HF parameter names to the GGUF tensor names of the base (``gguf``'s tensor-name map).

    With ``in_base`` every name must be a tensor of the base (a change is added to it, and a
    missing ``output.weight`` means tied embeddings); without, a model written whole only needs
    a GGUF name for each of its own tensors.

    Raises:
        ExportError: a trained parameter has no GGUF name (an architecture this export does not know).
    """
    gguf = require("gguf", extra="finetune")
    arch_name = _field_value(reader, "general.architecture")
    arch = next((k for k, v in gguf.MODEL_ARCH_NAMES.items() if v == arch_name), None)
    if arch is None:
        raise ExportError(f"the gguf package does not know the architecture '{arch_name}'")
    blocks = int(_field_value(reader, f"{arch_name}.block_count"))
    name_map = gguf.get_tensor_name_map(arch, blocks)
    present = {t.name for t in reader.tensors}
    out: dict[str, str] = {}
    for hf in hf_names:
        if in_base and hf == "lm_head.weight" and "output.weight" not in present:
            out[hf] = "token_embd.weight"  # tied output and input embeddings
            continue
        name = name_map.get_name(hf, try_suffixes=(".weight", ".bias"))
        if name is None or (in_base and name not in present):
            raise ExportError(f"cannot place the trained tensor '{hf}' in the {arch_name} GGUF "
                              f"(mapped to {name!r})")
        out[hf] = name
    return out


def permute_rows(reader: Any, gguf_name: str, rows: Any, *,
                 heads: tuple[int, int] | None = None) -> Any:
    """Put rows in llama.cpp's order: llama's q/k projections are permuted for its rotary layout.

    ``heads`` is ``(query heads, key/value heads)`` when they differ from the base GGUF's (a
    pruned model); by default they are read from the base.
    """
    arch = _field_value(reader, "general.architecture")
    if arch != "llama" or not (".attn_q." in gguf_name or ".attn_k." in gguf_name):
        return rows
    if heads is None:
        q_heads = int(_field_value(reader, "llama.attention.head_count"))
        heads = (q_heads, int(_field_value(reader, "llama.attention.head_count_kv") or q_heads))
    n_head = heads[1] if ".attn_k." in gguf_name else heads[0]
    shape = rows.shape
    return (rows.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:])
            .swapaxes(1, 2).reshape(shape))


def _copy_metadata(reader: Any, writer: Any, *, skip: Sequence[str] = (),
                   replace: dict[str, Any] | None = None) -> None:
    """Copy the reader's metadata; ``replace`` gives new contents for some keys (``None``
    drops the key)."""
    gguf = require("gguf", extra="finetune")
    replace = replace or {}
    for key, f in reader.fields.items():
        if key.startswith("GGUF.") or key in skip or key == "general.architecture":
            continue
        value = replace[key] if key in replace else f.contents()
        if value is None:
            continue
        main = f.types[0]
        if main == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, value, main, sub_type=f.types[-1])
        else:
            writer.add_key_value(key, value, main)


def trimmed_tokenizer_fields(reader: Any, kept: Sequence[int]) -> dict[str, Any]:
    """New contents of the base GGUF's tokenizer keys for a model that keeps only the base ids
    ``kept`` (:mod:`finetune.vocab`): per-token arrays (tokens, scores, types) indexed by
    ``kept``, BPE merges whose parts and result are kept, special token ids renumbered (dropped
    when the token is gone)."""
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    new = {old: i for i, old in enumerate(kept)}
    out: dict[str, Any] = {}
    for key, f in reader.fields.items():
        if not key.startswith("tokenizer.ggml."):
            continue
        if key == "tokenizer.ggml.merges":
            names = {tokens[i] for i in kept}
            out[key] = [m for m in f.contents() if _merge_kept(m, names)]
        elif key.endswith("_token_id"):
            out[key] = new.get(int(f.contents()))
        elif len(f.data) == len(tokens) and key != "tokenizer.ggml.model":
            values = f.contents()
            out[key] = [values[i] for i in kept]
    return out


def _merge_kept(merge: str, names: set[str]) -> bool:
    a, _, b = merge.partition(" ")
    return a in names and b in names and a + b in names


# --- writers -------------------------------------------------------------------------------------


def write_merged_gguf(base_gguf: Path, change: TrainedChange, out: Path, *, name: str = "",
                      log: Callable[[str], None] = print) -> Path:
    """Write an F16 GGUF of the base plus the trained change (1-D tensors stay F32)."""
    gguf = require("gguf", extra="finetune")
    np = require("numpy", extra="finetune")
    reader = gguf.GGUFReader(str(base_gguf))
    names = hf_to_gguf_names(reader, list(change.lora) + list(change.full))
    by_gguf: dict[str, list[str]] = {}
    for hf, g in names.items():
        by_gguf.setdefault(g, []).append(hf)
    arch = _field_value(reader, "general.architecture")
    writer = gguf.GGUFWriter(str(out), arch)
    _copy_metadata(reader, writer, skip=("general.file_type", "general.name"))
    writer.add_name(name or f"{_field_value(reader, 'general.name') or arch} (fine-tuned)")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    plan = []
    for t in reader.tensors:
        shape = tuple(int(x) for x in reversed(t.shape.tolist()))  # numpy order: [rows, cols]
        dtype = np.float32 if len(shape) == 1 else np.float16
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        writer.add_tensor_info(t.name, shape, np.dtype(dtype), nbytes)
        plan.append((t, shape, dtype))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    changed = 0
    for t, shape, dtype in plan:
        data = gguf.quants.dequantize(t.data, t.tensor_type).reshape(shape).astype(np.float32)
        for hf in by_gguf.get(t.name, ()):
            delta = change.delta(hf)
            data = data + permute_rows(reader, t.name, delta).reshape(shape)
            changed += 1
        writer.write_tensor_data(np.ascontiguousarray(data.astype(dtype)))
    writer.close()
    log(f"wrote {out.name}: {len(plan)} tensors, {changed} changed")
    return out


# Architectures whose GGUF stores RMS-norm weights as ``1 + w`` (transformers keeps ``w`` and
# adds the 1 in the norm; its GGUF loader subtracts it again).
_NORM_PLUS_ONE = ("gemma", "gemma2", "gemma3")
# Architectures whose llama.cpp loader sizes the query and output projections by the hidden size
# (not heads x head_dim), so they cannot take fewer heads.
_Q_WIDTH_IS_HIDDEN = ("qwen2",)
# The GGUF keys (after ``<arch>.``) that structured pruning changes; the rest come from the base.
_SHAPE_KEYS = ("block_count", "feed_forward_length", "attention.head_count",
               "attention.head_count_kv", "attention.key_length", "attention.value_length",
               "attention.sliding_window_pattern")


def shape_metadata(config: dict[str, Any]) -> dict[str, Any]:
    """The hyperparameters a pruned model's GGUF needs, under GGUF keys without the arch prefix,
    from its transformers ``config.json``.

    ``head_dim`` is written as ``key_length``/``value_length`` because llama.cpp would otherwise
    take ``hidden_size / heads``, wrong once heads are removed. A per-layer value (a list) is
    written as a GGUF array, which llama.cpp reads layer by layer. Gemma 3's sliding and full
    attention layers are written as a per-layer ``sliding_window_pattern``: llama.cpp's default
    (every sixth layer full) no longer holds once layers are removed.

    Example:
        >>> shape_metadata({"num_hidden_layers": 2, "intermediate_size": 32, "hidden_size": 32,
        ...                 "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8})
        ... # doctest: +NORMALIZE_WHITESPACE
        {'block_count': 2, 'feed_forward_length': 32, 'attention.head_count': 2,
         'attention.head_count_kv': 1, 'attention.key_length': 8, 'attention.value_length': 8}
    """
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    out = {"block_count": config["num_hidden_layers"],
           "feed_forward_length": config["intermediate_size"],
           "attention.head_count": heads,
           "attention.head_count_kv": config.get("num_key_value_heads") or heads,
           "attention.key_length": head_dim, "attention.value_length": head_dim}
    types = config.get("layer_types") or []
    if "sliding_attention" in types:
        out["attention.sliding_window_pattern"] = [int(t == "sliding_attention") for t in types]
    return out


def write_model_gguf(base_gguf: Path, hf_dir: Path, out: Path, *, name: str = "",
                     log: Callable[[str], None] = print) -> Path:
    """Write an F16 GGUF of a transformers folder whose shapes differ from its base's (a pruned
    model): the base GGUF gives the metadata and tokenizer, the folder's ``config.json`` the
    hyperparameters pruning changed (:func:`shape_metadata`), and its weights every tensor
    (1-D tensors stay F32), under ``gguf``'s tensor names, llama's q/k rows permuted for the
    pruned head counts and Gemma's norms stored as llama.cpp reads them.

    Tensors are read and written one at a time, so memory stays near one tensor.

    Raises:
        ExportError: the folder is not a transformers model, its vocabulary is not the base
            GGUF's, or a weight has no GGUF name.
    """
    gguf = require("gguf", extra="finetune")
    np = require("numpy", extra="finetune")
    safetensors = require("safetensors", extra="finetune")
    config_file = hf_dir / "config.json"
    if not config_file.exists():
        raise ExportError(f"{hf_dir} has no config.json; it is not a transformers model folder")
    config = json.loads(config_file.read_text())
    reader = gguf.GGUFReader(str(base_gguf))
    arch = _field_value(reader, "general.architecture")
    shape = shape_metadata(config)
    q_width = shape["attention.head_count"] * shape["attention.key_length"]
    sources: dict[str, Path] = {}
    for f in sorted(hf_dir.glob("*.safetensors")):
        with safetensors.safe_open(str(f), framework="numpy") as st:
            sources.update(dict.fromkeys(st.keys(), f))
    if config.get("tie_word_embeddings"):
        sources.pop("lm_head.weight", None)  # llama.cpp reuses token_embd
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    vocab = config.get("vocab_size")
    kept = read_vocab_map(hf_dir)  # a trimmed vocabulary: its rows' ids in the base GGUF
    replace = {}
    if kept is not None:
        if tokens is None or len(kept) != vocab or max(kept) >= len(tokens.data):
            raise ExportError(f"{hf_dir.name}'s {VOCAB_MAP} does not fit: {len(kept)} ids for "
                              f"{vocab} token embeddings over the base GGUF {base_gguf.name}'s "
                              f"{len(tokens.data) if tokens is not None else 0} tokens")
        replace = trimmed_tokenizer_fields(reader, kept)
        if f"{arch}.vocab_size" in reader.fields:
            replace[f"{arch}.vocab_size"] = len(kept)
    elif tokens is not None and vocab is not None and len(tokens.data) > vocab:
        raise ExportError(f"{hf_dir.name} has {vocab} token embeddings but the base GGUF "
                          f"{base_gguf.name} has {len(tokens.data)} tokens: not the same "
                          "tokenizer")
    if arch in _Q_WIDTH_IS_HIDDEN and q_width != config["hidden_size"]:
        raise ExportError(
            f"llama.cpp's {arch} models need as many query features as hidden ones "
            f"({config['hidden_size']}); {hf_dir.name} has {shape['attention.head_count']} heads "
            f"x {shape['attention.key_length']} = {q_width} after pruning heads, so it cannot be "
            "a GGUF: prune --what layers or mlp for a GGUF, or serve it through transformers")
    if shape["feed_forward_length"] % 32:
        log(f"note: an MLP {shape['feed_forward_length']} channels wide does not divide into "
            "llama.cpp's 32-weight quantization blocks, so quantized files keep ffn_down in "
            "F16; prune again (appkit finetune prune keeps whole blocks) for smaller files")
    names = hf_to_gguf_names(reader, list(sources), in_base=False)
    writer = gguf.GGUFWriter(str(out), arch)
    _copy_metadata(reader, writer, skip=("general.file_type", "general.name",
                                         *(f"{arch}.{k}" for k in _SHAPE_KEYS)),
                   replace=replace)
    writer.add_name(name or f"{_field_value(reader, 'general.name') or arch} (pruned)")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    for key, value in shape.items():
        if isinstance(value, list):
            writer.add_array(f"{arch}.{key}", value)
        else:
            writer.add_uint32(f"{arch}.{key}", int(value))
    heads = (shape["attention.head_count"], shape["attention.head_count_kv"])

    def tensor(hf: str) -> Any:
        with safetensors.safe_open(str(sources[hf]), framework="numpy") as st:
            data = st.get_tensor(hf).astype(np.float32)
        g = names[hf]
        data = permute_rows(reader, g, data, heads=heads)
        if arch in _NORM_PLUS_ONE and g.endswith("norm.weight"):
            data = data + 1.0
        return np.ascontiguousarray(data.astype(np.float32 if data.ndim == 1 else np.float16))

    plan: list[tuple[str, tuple[int, ...], Callable[[], Any]]] = []
    for hf, f in sources.items():
        with safetensors.safe_open(str(f), framework="numpy") as st:
            dims = tuple(st.get_slice(hf).get_shape())
        plan.append((names[hf], dims, lambda hf=hf: tensor(hf)))
    # tensors of the base that no layer owns and the folder does not hold (e.g. rope_freqs);
    # a tied model has no output matrix of its own, whatever the base had
    written = set(names.values()) | {"output.weight"}
    for t in reader.tensors:
        if t.name not in written and not t.name.startswith("blk."):
            dims = tuple(int(x) for x in reversed(t.shape.tolist()))
            plan.append((t.name, dims, lambda t=t, dims=dims: np.ascontiguousarray(
                gguf.quants.dequantize(t.data, t.tensor_type).reshape(dims)
                .astype(np.float32 if len(dims) == 1 else np.float16))))
    for g, dims, _ in plan:
        dtype = np.dtype(np.float32 if len(dims) == 1 else np.float16)
        writer.add_tensor_info(g, dims, dtype, int(np.prod(dims)) * dtype.itemsize)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for _, _, make in plan:
        writer.write_tensor_data(make())
    writer.close()
    log(f"wrote {out.name}: {len(plan)} tensors, {shape['block_count']} layers")
    return out


def write_lora_gguf(base_gguf: Path, change: TrainedChange, out: Path) -> Path:
    """Write the LoRA adapter as a GGUF LoRA for llama.cpp (``lora_path``)."""
    gguf = require("gguf", extra="finetune")
    np = require("numpy", extra="finetune")
    if not change.lora:
        raise ExportError("a full fine-tune has no adapter; export it with --mode merged")
    reader = gguf.GGUFReader(str(base_gguf))
    names = hf_to_gguf_names(reader, list(change.lora))
    arch = _field_value(reader, "general.architecture")
    writer = gguf.GGUFWriter(str(out), arch)
    writer.add_string("general.type", "adapter")
    writer.add_string("adapter.type", "lora")
    # llama.cpp scales by alpha / rank; peft by lora_alpha / r (or / sqrt(r) with rsLoRA)
    writer.add_float32("adapter.lora.alpha", float(next(iter(change.lora.values())).scale
                                                    * change.rank))
    for hf, pair in change.lora.items():
        g = names[hf].removesuffix(".weight")
        writer.add_tensor(f"{g}.weight.lora_a", np.ascontiguousarray(pair.a.astype(np.float32)))
        b = permute_rows(reader, names[hf], pair.b.astype(np.float32))
        writer.add_tensor(f"{g}.weight.lora_b", np.ascontiguousarray(b))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def quantize_gguf(src: Path, dst: Path, quant: str, *, threads: int = 0) -> Path:
    """Quantize a GGUF with llama.cpp's own quantizer (``llama_model_quantize``).

    Raises:
        ExportError: an unknown type, or llama.cpp reports a failure.
    """
    if quant not in QUANT_TYPES:
        raise ExportError(f"unknown quantization '{quant}'; choose from {', '.join(QUANT_TYPES)}")
    llama_cpp = require("llama_cpp", extra="chat", package="llama-cpp-python")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, QUANT_TYPES[quant])
    params.nthread = threads or os.cpu_count() or 1
    code = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), params)
    if code != 0 or not dst.exists():
        raise ExportError(f"llama.cpp could not quantize {src.name} to {quant} (code {code})")
    return dst


def check_loads(path: Path, lora_path: Path | None = None) -> None:
    """Load the file with llama-cpp-python and evaluate one token, so a broken file is caught here.

    Raises:
        ExportError: llama.cpp cannot load it.
    """
    llama_cpp = require("llama_cpp", extra="chat", package="llama-cpp-python")
    kwargs: dict[str, Any] = {"model_path": str(path), "n_ctx": 64, "verbose": False,
                              "n_threads": os.cpu_count() or 1}
    if lora_path:
        kwargs["lora_path"] = str(lora_path)
    try:
        llama = llama_cpp.Llama(**kwargs)
        llama.eval(llama.tokenize(b"Hello", add_bos=True)[:2])
        llama.close()
    except Exception as exc:  # noqa: BLE001 - llama.cpp raises ValueError/RuntimeError variously
        raise ExportError(f"llama.cpp cannot load the exported {path.name}: {exc}") from exc


# --- the command ---------------------------------------------------------------------------------


@dataclass
class ExportResult:
    """The registered models and the files written."""

    models: list[ModelSpec]
    folder: Path
    files: dict[str, Path]
    seconds: float


def _check_quants(quants: Sequence[str]) -> None:
    for q in quants:
        if q not in QUANT_TYPES:
            raise ExportError(f"unknown quantization '{q}'; choose from {', '.join(QUANT_TYPES)}")


def _quantized(write_f16: Callable[[Path], Path], tmp: Path, name: str, quants: Sequence[str],
               keep_f16: bool, log: Callable[[str], None]) -> dict[str, Path]:
    """Write the F16 file into ``tmp``, quantize it with llama.cpp, check that each file loads."""
    f16 = write_f16(tmp / f"{name}-f16.gguf")
    files: dict[str, Path] = {}
    for q in quants:
        if q != "f16":
            log(f"quantizing to {q} with llama.cpp")
            files[q] = quantize_gguf(f16, tmp / f"{name}-{q}.gguf", q)
    if "f16" in quants or keep_f16:
        files["f16"] = f16
    else:
        f16.unlink()
    for path in files.values():
        check_loads(path)
    return files


def _publish(name: str, build: Callable[[Path], dict[str, Path]], entry: dict[str, Any]
             ) -> tuple[Path, dict[str, Path]]:
    """Build files in a ``.partial`` folder and move each into ``exports/NAME`` (recorded in its
    ``export.json``); on any failure nothing is left behind."""
    folder = exports_dir() / name
    tmp = exports_dir() / f".{name}.{os.getpid()}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        files = build(tmp)
        # Files move in one by one (each rename is atomic), so exports of other modes or
        # quantizations already in the folder, and their catalogue entries, stay valid.
        folder.mkdir(parents=True, exist_ok=True)
        for path in files.values():
            os.replace(path, folder / path.name)
        manifest = folder / "export.json"
        done = json.loads(manifest.read_text()) if manifest.exists() else {}
        done.update({k: {"file": v.name, **entry} for k, v in files.items()})
        manifest.write_text(json.dumps(done, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder, {k: folder / v.name for k, v in files.items()}


def _pruned_spec(name: str) -> ModelSpec | None:
    """The catalogue entry of a pruned transformers model of that name, if there is one."""
    try:
        spec = get_spec(name)
    except AppkitError:
        return None
    return spec if spec.format == "hf" and spec.lineage.get("pruned") else None


def export_run(run: Run | str, *, quants: Sequence[str] = ("q8_0",), mode: Mode = "merged",
               name: str = "", register: bool = True, keep_f16: bool = False,
               log: Callable[[str], None] = print) -> ExportResult:
    """Export a finished run and register one catalogue model per quantization.

    A pruned model (``appkit finetune prune``, with or without a recovery run of the same name)
    is exported whole by :func:`export_pruned`.

    Args:
        run: the run or its name, or the name of a pruned model.
        quants: ``f16``, ``q8_0`` and/or ``q4_k_m`` (merged); ignored for ``lora``, whose adapter
            applies over the base's own quantized GGUF.
        mode: ``merged`` (a full GGUF), ``lora`` (a GGUF LoRA adapter) or ``transformers`` (the
            peft adapter over the float32 base, served by ``TransformersChatModel``; the only
            route for prompt and prefix tuning).
        name: the catalogue name prefix (default: the run's name); models are ``NAME-QUANT``
            (``NAME-lora`` for an adapter).
        register: write catalogue entries (``appkit models`` lists them).
        keep_f16: keep the F16 file even when it was not asked for.
        log: where progress lines go.

    Raises:
        ExportError: an unfinished run, an unknown quantization, a failed write or load (nothing
            is registered and no partial folder is left).
    """
    pruned = _pruned_spec(run.name if isinstance(run, Run) else run)
    if pruned is not None:
        if mode != "merged":
            raise ExportError(f"'{pruned.name}' is a pruned model: it is exported whole (--mode "
                              "merged); a LoRA adapter needs the base's shapes, and the "
                              f"transformers model is already registered as '{pruned.name}'")
        return export_pruned(pruned, quants=quants, name=name, register=register,
                             keep_f16=keep_f16, log=log)
    run = run if isinstance(run, Run) else Run.open(run)
    info = run.info
    if mode == "transformers":
        return export_transformers(run, name=name, register=register, log=log)
    _check_quants(quants)
    name = name or run.name
    if mode == "merged" and "q4_k_m" in quants and info.get("method", "lora") == "lora":
        # SQuAD, 200 questions (benchmarks/RESULTS_finetune.md): merged F16 63.8 F1, Q8_0 64.0,
        # Q4_K_M 41.9, the LoRA GGUF over the base's Q4_K_M 64.4
        log("warning: requantizing a merged LoRA to q4_k_m can undo most of a small change; "
            "prefer q8_0, or --mode lora (the adapter over the base's own Q4_K_M file)")
    start = time.perf_counter()
    change = read_change(run)
    base_spec = get_spec(info["base"])
    base_gguf = Path(info["base_gguf"])
    if not base_gguf.exists():
        raise ExportError(f"the base GGUF {base_gguf} of run '{run.name}' is gone")

    def build(tmp: Path) -> dict[str, Path]:
        if mode == "lora":
            lora = write_lora_gguf(base_gguf, change, tmp / f"{name}-lora.gguf")
            check_loads(base_gguf, lora)
            return {"lora": lora}
        if mode == "merged":
            return _quantized(lambda out: write_merged_gguf(base_gguf, change, out, name=name,
                                                            log=log),
                              tmp, name, quants, keep_f16, log)
        raise ExportError(f"unknown export mode '{mode}'; use merged, lora or transformers")

    folder, files = _publish(name, build, {"run": run.name, "mode": mode})
    lineage_base = {
        "base": base_spec.name, "base_gguf": str(base_gguf), "run": run.name,
        "method": info.get("method"), "data": info.get("data"), "data_hash": info.get("data_hash"),
        "steps": info.get("step"), "metrics": info.get("metrics", {}), "mode": mode,
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S"),
        **({"teacher": info["distill"].get("teacher")} if info.get("distill") else {}),
    }
    models: list[ModelSpec] = []
    for q, path in files.items():
        lineage = {**lineage_base, "quant": q if mode == "merged" else "base"}
        if mode == "lora":
            lineage["lora_path"] = str(path)
            local = str(base_gguf)
        else:
            local = str(path)
        spec = ModelSpec(
            name=f"{name}-{q}", role=base_spec.role, format="gguf", local_path=local,
            size=path.stat().st_size, lineage=lineage,
            description=f"{run.name} on {base_spec.name} "
                        f"({'LoRA adapter' if mode == 'lora' else q.upper()}), fine-tuned",
        )
        models.append(register_model(spec, persist=True) if register else spec)
    seconds = time.perf_counter() - start
    run.update(exports={**info.get("exports", {}), **{m.name: m.local_path for m in models}})
    return ExportResult(models, folder, files, seconds)


def gguf_base(spec: ModelSpec) -> tuple[ModelSpec, Path]:
    """The catalogue GGUF a model descends from (following ``lineage.base``) and its file.

    Raises:
        ExportError: the chain ends in a transformers folder or an unknown name: there is no
            GGUF to take the tokenizer and settings from.
    """
    current, seen = spec, set()
    while current.name not in seen:
        seen.add(current.name)
        if current.format == "gguf":
            from appkit.models.catalogue import resolve_model

            return current, resolve_model(current.name)[1]
        parent = current.lineage.get("base")
        try:
            current = get_spec(parent) if parent else current
        except AppkitError:
            break
    raise ExportError(
        f"'{spec.name}' does not descend from a catalogue GGUF model (its base is "
        f"{spec.lineage.get('base')!r}); a GGUF export takes the tokenizer and settings from the "
        "base's GGUF, so prune a GGUF model such as smollm2-135m, or serve it through "
        "transformers")


def export_pruned(model: ModelSpec | str, *, quants: Sequence[str] = ("q4_k_m",), name: str = "",
                  register: bool = True, keep_f16: bool = False,
                  log: Callable[[str], None] = print) -> ExportResult:
    """Export a pruned transformers model whole to GGUF and register one model per quantization.

    The F16 file is written by :func:`write_model_gguf` (the metadata and tokenizer of the GGUF
    the model descends from, its own shapes and weights), then quantized by llama.cpp and
    checked like any export. Models are ``NAME-QUANT`` with lineage: base, the pruned model,
    what was pruned and the ratio, parameters before and after, recovery run and data.

    Example:
        >>> from finetune.export import export_pruned
        >>> export_pruned("smollm2-pruned", quants=("q4_k_m",)).models[0].name  # doctest: +SKIP
        'smollm2-pruned-q4_k_m'

    Raises:
        ExportError: not a pruned model, its folder is gone, no GGUF base, a shape llama.cpp
            cannot hold, an unknown quantization, a failed write or load.
    """
    spec = model if isinstance(model, ModelSpec) else get_spec(model)
    lin = spec.lineage
    if spec.format != "hf" or not lin.get("pruned"):
        raise ExportError(f"'{spec.name}' is not a pruned model; export runs with "
                          "'appkit finetune export RUN'")
    _check_quants(quants)
    hf_dir = Path(spec.local_path)
    if not (hf_dir / "config.json").exists():
        raise ExportError(f"the pruned model '{spec.name}' points at {hf_dir}, which is gone")
    base_spec, base_gguf = gguf_base(spec)
    name = name or spec.name
    start = time.perf_counter()
    folder, files = _publish(
        name, lambda tmp: _quantized(
            lambda out: write_model_gguf(base_gguf, hf_dir, out, name=name, log=log),
            tmp, name, quants, keep_f16, log),
        {"model": spec.name, "run": lin.get("run"), "mode": "merged"})
    lineage_base = {
        "base": base_spec.name, "base_gguf": str(base_gguf), "from": spec.name,
        **{k: lin.get(k) for k in ("pruned", "ratio", "params_before", "params_after",
                                   "recovery_steps", "run", "data", "data_hash")},
        "mode": "merged", "exported": time.strftime("%Y-%m-%dT%H:%M:%S")}
    models = []
    for q, path in files.items():
        out = ModelSpec(
            name=f"{name}-{q}", role=spec.role, format="gguf", local_path=str(path),
            size=path.stat().st_size, lineage={**lineage_base, "quant": q},
            description=f"{spec.name} ({q.upper()}): {base_spec.name} with "
                        f"{lin.get('ratio') or 0:.0%} of its {lin.get('pruned')} pruned")
        models.append(register_model(out, persist=True) if register else out)
    if lin.get("run"):  # the recovery run lists its exports, as a tuning run does
        try:
            run = Run.open(lin["run"])
            run.update(exports={**run.info.get("exports", {}),
                                **{m.name: m.local_path for m in models}})
        except AppkitError:
            pass  # the run folder was removed; the model itself is complete
    return ExportResult(models, folder, files, time.perf_counter() - start)


def export_transformers(run: Run, *, name: str = "", register: bool = True,
                        log: Callable[[str], None] = print) -> ExportResult:
    """Register a PEFT or full run as a transformers model, served without llama.cpp.

    A PEFT run's adapter is copied into ``exports/NAME/adapter`` and registered over the float32
    base; a full run's final weights become a whole transformers folder
    ``exports/NAME/transformers`` (the base's config and tokenizer beside them), for example to
    prune the fine-tuned model (``appkit finetune prune --model NAME-transformers``). Either is
    written through a ``.partial`` folder and registered as ``NAME-transformers`` (format
    ``hf``) with lineage ``base``, which ``chat.model`` can name; the app serves it with
    :class:`~appkit.models.transformers_chat.TransformersChatModel`.

    Raises:
        ExportError: a run neither PEFT nor full, no final adapter or weights, or the float32
            base is gone.
    """
    from finetune.peft_methods import is_peft

    info = run.info
    method = info.get("method", "lora")
    peft = is_peft(method)
    if not (peft or method == "full"):
        raise ExportError(f"run '{run.name}' is a {method} run; --mode transformers exports PEFT "
                          "adapters and full runs (use --mode merged for it)")
    final = "adapter_config.json" if peft else "model.safetensors"
    if not (run.final_dir / final).exists():
        what = "adapter" if peft else "weights"
        raise ExportError(f"run '{run.name}' has no final {what} ({info.get('status')})")
    hf_dir = Path(info.get("hf_dir", ""))
    if not (hf_dir / "config.json").exists():
        raise ExportError(f"the float32 base {hf_dir} of run '{run.name}' is gone; train again")
    start = time.perf_counter()
    name = name or run.name
    folder = exports_dir() / name
    part = "adapter" if peft else "transformers"
    tmp = exports_dir() / f".{name}.{os.getpid()}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        if peft:
            shutil.copytree(run.final_dir, tmp / part)
        else:  # the base's config and tokenizer, the run's weights
            shutil.copytree(hf_dir, tmp / part, ignore=shutil.ignore_patterns(
                "*.safetensors", "*.bin", "*.pt"))
            shutil.copy2(run.final_dir / final, tmp / part / final)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(folder / part, ignore_errors=True)
        os.replace(tmp / part, folder / part)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base_spec = get_spec(info["base"])
    out = folder / part
    lineage = {"base": base_spec.name, "run": run.name, "method": method,
               "data": info.get("data"), "data_hash": info.get("data_hash"),
               "steps": info.get("step"), "metrics": info.get("metrics", {}),
               "mode": "transformers", "exported": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if peft:
        lineage["adapter_path"] = str(out)
    spec = ModelSpec(
        name=f"{name}-transformers", role=base_spec.role, format="hf",
        local_path=str(hf_dir if peft else out),
        size=sum(f.stat().st_size for f in out.iterdir() if f.is_file()), lineage=lineage,
        description=f"{run.name} on {base_spec.name} ({method}), served through transformers"
                    + (": a GGUF cannot hold it" if peft else ""))
    model = register_model(spec, persist=True) if register else spec
    log(f"{model.name}: {method} " + (f"adapter over {hf_dir.name}" if peft else
                                      f"weights in {out}") + ", served through transformers")
    run.update(exports={**info.get("exports", {}), model.name: model.local_path})
    return ExportResult([model], folder, {part: out}, time.perf_counter() - start)
