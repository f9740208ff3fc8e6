"""Export a run to GGUF, quantize it with llama.cpp, and register it in the model catalogue.

Two routes, both built on the base model's own GGUF (its metadata and tokenizer are copied as they
are, with the ``gguf`` package):

* ``merged``: every base tensor is dequantized, the trained change (LoRA ``B @ A * alpha / r``,
  IA3's ``W * (scale - 1)``, or the full fine-tune's difference to the base) is added under the
  GGUF tensor name (``gguf``'s tensor-name map gives HF -> GGUF names), and an F16 GGUF is written; llama.cpp's own quantizer
  (``llama_cpp.llama_model_quantize``) then makes Q8_0 or Q4_K_M from it.
* ``lora``: the adapter becomes a GGUF LoRA (``<tensor>.lora_a`` / ``.lora_b``, ``adapter.lora.alpha``)
  that llama-cpp-python applies with ``lora_path`` over the unchanged base GGUF.

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


def hf_to_gguf_names(reader: Any, hf_names: Sequence[str]) -> dict[str, str]:
    """Map HF parameter names to the GGUF tensor names of the base (``gguf``'s tensor-name map).

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
        if hf == "lm_head.weight" and "output.weight" not in present:
            out[hf] = "token_embd.weight"  # tied output and input embeddings
            continue
        name = name_map.get_name(hf, try_suffixes=(".weight", ".bias"))
        if name is None or name not in present:
            raise ExportError(f"cannot place the trained tensor '{hf}' in the {arch_name} GGUF "
                              f"(mapped to {name!r})")
        out[hf] = name
    return out


def permute_rows(reader: Any, gguf_name: str, rows: Any) -> Any:
    """Put rows in llama.cpp's order: llama's q/k projections are permuted for its rotary layout."""
    arch = _field_value(reader, "general.architecture")
    if arch != "llama" or not (".attn_q." in gguf_name or ".attn_k." in gguf_name):
        return rows
    n_head = int(_field_value(reader, "llama.attention.head_count"))
    if ".attn_k." in gguf_name:
        n_head = int(_field_value(reader, "llama.attention.head_count_kv") or n_head)
    shape = rows.shape
    return (rows.reshape(n_head, 2, shape[0] // n_head // 2, *shape[1:])
            .swapaxes(1, 2).reshape(shape))


def _copy_metadata(reader: Any, writer: Any, *, skip: Sequence[str] = ()) -> None:
    gguf = require("gguf", extra="finetune")
    for key, f in reader.fields.items():
        if key.startswith("GGUF.") or key in skip or key == "general.architecture":
            continue
        main = f.types[0]
        if main == gguf.GGUFValueType.ARRAY:
            writer.add_key_value(key, f.contents(), main, sub_type=f.types[-1])
        else:
            writer.add_key_value(key, f.contents(), main)


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


def export_run(run: Run | str, *, quants: Sequence[str] = ("q4_k_m",), mode: Mode = "merged",
               name: str = "", register: bool = True, keep_f16: bool = False,
               log: Callable[[str], None] = print) -> ExportResult:
    """Export a finished run and register one catalogue model per quantization.

    Args:
        run: the run or its name.
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
    run = run if isinstance(run, Run) else Run.open(run)
    info = run.info
    if mode == "transformers":
        return export_transformers(run, name=name, register=register, log=log)
    for q in quants:
        if q not in QUANT_TYPES:
            raise ExportError(f"unknown quantization '{q}'; choose from {', '.join(QUANT_TYPES)}")
    name = name or run.name
    if mode == "merged" and "q4_k_m" in quants and info.get("method", "lora") == "lora":
        # measured on SQuAD (benchmarks/RESULTS_finetune.md): merged F16 59 F1, Q8_0 63, Q4_K_M 29
        log("warning: requantizing a merged LoRA to q4_k_m can undo most of a small change; "
            "prefer q8_0, or --mode lora (the adapter over the base's own Q4_K_M file)")
    start = time.perf_counter()
    change = read_change(run)
    base_spec = get_spec(info["base"])
    base_gguf = Path(info["base_gguf"])
    if not base_gguf.exists():
        raise ExportError(f"the base GGUF {base_gguf} of run '{run.name}' is gone")
    folder = exports_dir() / name
    tmp = exports_dir() / f".{name}.{os.getpid()}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files: dict[str, Path] = {}
    try:
        if mode == "lora":
            files["lora"] = write_lora_gguf(base_gguf, change, tmp / f"{name}-lora.gguf")
            check_loads(base_gguf, files["lora"])
        elif mode == "merged":
            f16 = write_merged_gguf(base_gguf, change, tmp / f"{name}-f16.gguf", name=name, log=log)
            for q in quants:
                if q != "f16":
                    log(f"quantizing to {q} with llama.cpp")
                    files[q] = quantize_gguf(f16, tmp / f"{name}-{q}.gguf", q)
            if "f16" in quants or keep_f16:
                files["f16"] = f16
            else:
                f16.unlink()
            for q, path in files.items():
                check_loads(path)
        else:
            raise ExportError(f"unknown export mode '{mode}'; use merged, lora or transformers")
        # Files move in one by one (each rename is atomic), so exports of other modes or
        # quantizations already in the folder, and their catalogue entries, stay valid.
        folder.mkdir(parents=True, exist_ok=True)
        for path in files.values():
            os.replace(path, folder / path.name)
        manifest = folder / "export.json"
        done = json.loads(manifest.read_text()) if manifest.exists() else {}
        done.update({k: {"file": v.name, "run": run.name, "mode": mode} for k, v in files.items()})
        manifest.write_text(json.dumps(done, indent=2))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    files = {k: folder / v.name for k, v in files.items()}
    lineage_base = {
        "base": base_spec.name, "base_gguf": str(base_gguf), "run": run.name,
        "method": info.get("method"), "data": info.get("data"), "data_hash": info.get("data_hash"),
        "steps": info.get("step"), "metrics": info.get("metrics", {}), "mode": mode,
        "exported": time.strftime("%Y-%m-%dT%H:%M:%S"),
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


def export_transformers(run: Run, *, name: str = "", register: bool = True,
                        log: Callable[[str], None] = print) -> ExportResult:
    """Register a PEFT run as a transformers model: its adapter over the float32 base.

    The adapter is copied into ``exports/NAME`` (through a ``.partial`` folder) and registered as
    ``NAME-transformers`` (format ``hf``), which ``chat.model`` can name; the app serves it with
    :class:`~appkit.models.transformers_chat.TransformersChatModel`.

    Raises:
        ExportError: not a PEFT run, no final adapter, or the float32 base is gone.
    """
    from finetune.peft_methods import is_peft

    info = run.info
    method = info.get("method", "lora")
    if not is_peft(method):
        raise ExportError(f"run '{run.name}' is a {method} run; --mode transformers exports PEFT "
                          "adapters (use --mode merged for it)")
    if not (run.final_dir / "adapter_config.json").exists():
        raise ExportError(f"run '{run.name}' has no final adapter ({info.get('status')})")
    hf_dir = Path(info.get("hf_dir", ""))
    if not (hf_dir / "config.json").exists():
        raise ExportError(f"the float32 base {hf_dir} of run '{run.name}' is gone; train again")
    start = time.perf_counter()
    name = name or run.name
    folder = exports_dir() / name
    tmp = exports_dir() / f".{name}.{os.getpid()}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        shutil.copytree(run.final_dir, tmp / "adapter")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(folder / "adapter", ignore_errors=True)
        os.replace(tmp / "adapter", folder / "adapter")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    base_spec = get_spec(info["base"])
    adapter = folder / "adapter"
    spec = ModelSpec(
        name=f"{name}-transformers", role=base_spec.role, format="hf", local_path=str(hf_dir),
        size=sum(f.stat().st_size for f in adapter.iterdir()),
        lineage={"base": base_spec.name, "run": run.name, "method": method,
                 "data": info.get("data"), "data_hash": info.get("data_hash"),
                 "steps": info.get("step"), "metrics": info.get("metrics", {}),
                 "mode": "transformers", "adapter_path": str(adapter),
                 "exported": time.strftime("%Y-%m-%dT%H:%M:%S")},
        description=f"{run.name} on {base_spec.name} ({method}), served through transformers: "
                    "a GGUF cannot hold it")
    model = register_model(spec, persist=True) if register else spec
    log(f"{model.name}: {method} adapter over {hf_dir.name}, served through transformers")
    run.update(exports={**info.get("exports", {}), model.name: model.local_path})
    return ExportResult([model], folder, {"adapter": adapter}, time.perf_counter() - start)
