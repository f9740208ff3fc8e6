"""Base models for training: a catalogue GGUF turned once into a float32 transformers checkpoint.

transformers reads a GGUF into a float32 torch model (``from_pretrained(dir, gguf_file=name)``), but
the loaded model still carries the GGUF quantizer marker and refuses to be trained or saved. We clear
the marker and save a float32 safetensors copy under the appkit cache, keyed by the GGUF's checksum,
so the slow conversion (about a minute for Gemma 3 270M) runs once per base model.

Example:
    >>> from finetune.base import load_base
    >>> base = load_base("smollm2-135m")  # doctest: +SKIP
    >>> base.model.config.model_type  # doctest: +SKIP
    'llama'
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appkit.errors import AppkitError
from appkit.lazy import require
from appkit.models.catalogue import ModelSpec, cache_dir, resolve_model, sha256_file


def finetune_home() -> Path:
    """Where converted bases, runs and exports live (``<appkit cache>/finetune``)."""
    return cache_dir().parent / "finetune"


@dataclass
class BaseModel:
    """A base model ready for training.

    Attributes:
        name: the catalogue name.
        spec: its catalogue entry.
        gguf_path: the GGUF it came from (its metadata and tokenizer are reused at export).
        hf_dir: the float32 safetensors copy.
        model: the torch model (float32, on CPU).
        tokenizer: its tokenizer.
        has_chat_template: whether prompts are rendered with the chat template.
    """

    name: str
    spec: ModelSpec
    gguf_path: Path
    hf_dir: Path
    model: Any
    tokenizer: Any
    has_chat_template: bool


def resolve_base(name: str) -> tuple[ModelSpec, Path]:
    """The catalogue entry and GGUF file of a base model, with an error for people.

    Raises:
        AppkitError: the name is unknown, or the model is not a GGUF language model.
    """
    spec, path = resolve_model(name)
    if spec.format != "gguf" or spec.role not in ("chat", "completion"):
        raise AppkitError(
            f"'{name}' is a {spec.role} model in {spec.format} format; fine-tuning needs a GGUF "
            "chat or completion model such as gemma3-270m or smollm2-135m (see 'appkit models')"
        )
    if path.is_dir() or path.suffix != ".gguf":
        raise AppkitError(f"'{name}' resolves to {path}, which is not a .gguf file")
    return spec, path


def converted_dir(gguf_path: Path) -> Path:
    """Where the float32 copy of ``gguf_path`` is kept."""
    digest = sha256_file(gguf_path)[:16]
    return finetune_home() / "bases" / f"{gguf_path.stem}-{digest}"


def convert_gguf(gguf_path: Path, *, log: Any = print) -> Path:
    """Write (once) a float32 safetensors checkpoint and tokenizer of ``gguf_path``; return its folder.

    The copy is written to a temporary folder and renamed when complete, so an interrupted
    conversion never leaves a half-written base behind.
    """
    target = converted_dir(gguf_path)
    if (target / "config.json").exists():
        return target
    transformers = require("transformers", extra="finetune")
    log(f"converting {gguf_path.name} to a float32 checkpoint (once; about a minute)")
    start = time.perf_counter()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name, dtype="float32")
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        str(gguf_path.parent), gguf_file=gguf_path.name)
    _clear_gguf_marker(model)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        model.save_pretrained(str(tmp), safe_serialization=True)
        tokenizer.save_pretrained(str(tmp))
        (tmp / "appkit_source.json").write_text(json.dumps({"gguf": str(gguf_path)}))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"converted in {time.perf_counter() - start:.0f}s: {target}")
    return target


def _clear_gguf_marker(model: Any) -> None:
    model.hf_quantizer = None
    for attr in ("quantization_config",):
        if hasattr(model.config, attr):
            delattr(model.config, attr)
    if hasattr(model, "is_quantized"):
        try:
            model.is_quantized = False
        except AttributeError:
            pass


def load_base(name: str, *, log: Any = print) -> BaseModel:
    """Resolve, convert (once) and load a catalogue GGUF model as a trainable float32 model.

    Args:
        name: a catalogue name or a GGUF path.
        log: where progress lines go.

    Raises:
        AppkitError: unknown name, not a GGUF language model, or the optional extra is missing.
    """
    spec, gguf_path = resolve_base(name)
    hf_dir = convert_gguf(gguf_path, log=log)
    transformers = require("transformers", extra="finetune")
    model = transformers.AutoModelForCausalLM.from_pretrained(str(hf_dir), dtype="float32")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(hf_dir))
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    has_template = bool(getattr(tokenizer, "chat_template", None)) and spec.role == "chat"
    return BaseModel(spec.name, spec, gguf_path, hf_dir, model, tokenizer, has_template)


def model_folder(ref: str, *, log: Callable[[str], None] = print) -> tuple[Path, Any]:
    """The transformers folder of a model reference and its catalogue entry (None for folders):
    a folder as given, a catalogue GGUF converted once to float32, or a registered hf model.

    Raises:
        AppkitError: unknown name, or a model transformers cannot load (an endpoint, an embedder).
    """
    folder = Path(os.path.expanduser(ref))
    if folder.is_dir():
        if not (folder / "config.json").exists():
            raise AppkitError(f"{folder} has no config.json; give a transformers model folder "
                              "or a catalogue name such as smollm2-135m")
        return folder, None
    spec, path = resolve_model(ref)
    if spec.format == "gguf" and spec.role in ("chat", "completion"):
        return convert_gguf(resolve_base(ref)[1], log=log), spec
    if spec.format == "hf" and Path(path).is_dir() and not spec.lineage.get("adapter_path"):
        return Path(path), spec
    raise AppkitError(f"'{ref}' ({spec.role}, {spec.format}) cannot be loaded by "
                      "transformers; use a GGUF chat/completion model such as smollm2-135m, a "
                      "distilled student, or a transformers folder")


def new_model_name(source: str, suffix: str, name: str | None = None) -> str:
    """The name a new model registers under: ``name``, or ``<source stem>-<suffix>-<time>``.

    Raises:
        AppkitError: the name is a built-in model's, or a run or an exported model has it.
    """
    from appkit.models.catalogue import _BUILTIN
    from finetune.export import exports_dir
    from finetune.runs import runs_dir

    stem = Path(source).name if Path(source).is_dir() else source
    name = name or f"{stem}-{suffix}-{time.strftime('%Y%m%d-%H%M%S')}"
    if name in {s.name for s in _BUILTIN}:
        raise AppkitError(f"'{name}' is a built-in model name; choose another --name")
    for taken in (runs_dir() / name, exports_dir() / name / "transformers"):
        if taken.exists():
            raise AppkitError(f"'{name}' exists at {taken}; choose another --name")
    return name

