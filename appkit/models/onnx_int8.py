"""``OnnxInt8Embeddings``: a sentence-transformers model exported to ONNX and quantized to int8.

The first use exports the model's transformer with ``torch.onnx.export``, quantizes its matrix
multiplications with ``onnxruntime.quantization.quantize_dynamic`` (int8, per channel), and checks the
result against the fp32 model on fixed sample sentences (cosine): an export that drifts too far is
refused. The export lands in the model cache with a checksum and is reused by later processes (which
need neither torch nor sentence-transformers: only onnxruntime and tokenizers). Inference mirrors
sentence-transformers: the model's ``tokenizer.json``, mean pooling over the attention mask, L2
normalisation. Batches are formed from texts of similar length, so little time goes to padding.

Measured on SciFact and SQuAD in ``benchmarks/RESULTS.md``; the optimum route is avoided because it
downgrades transformers (``../shared/MODELS.md``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

from appkit.errors import ModelNotAvailableError
from appkit.lazy import require

EXPORT_VERSION = "int8-matmul-perchannel-v1"
MIN_COSINE = 0.97  # refuse an export whose vectors drift further than this from fp32
SAMPLE = (
    "The Q3 marketing budget was capped at 40,000 euros.",
    "How long does the sensor's battery last?",
    "Mitochondria are the powerhouse of the cell, producing ATP through respiration.",
    "Employees may book economy class for flights under six hours.",
    "a",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "SELECT name FROM users WHERE id = 42;",
    "In 1066 the Normans crossed the Channel and won the battle of Hastings, changing English "
    "law, language and architecture for centuries to come.",
)


def _source_key(model_dir: Path) -> str:
    digest = hashlib.sha256(EXPORT_VERSION.encode())
    for name in ("model.safetensors", "pytorch_model.bin", "config.json", "tokenizer.json"):
        p = model_dir / name
        if p.exists():
            st = p.stat()
            digest.update(f"{name}:{st.st_size}:{int(st.st_mtime)}".encode())
    return digest.hexdigest()[:16]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def _max_seq_length(model_dir: Path, default: int = 256) -> int:
    try:
        return int(json.loads((model_dir / "sentence_bert_config.json").read_text())["max_seq_length"])
    except (OSError, KeyError, ValueError):
        return default


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    # onnxruntime's quantizer calls logging.warning(), which would install a root handler
    # (basicConfig) that then prints every library's DEBUG records; a NullHandler prevents that.
    root = logging.getLogger()
    level = root.level
    guard = None if root.handlers else logging.NullHandler()
    if guard is not None:
        root.addHandler(guard)
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
        if guard is not None:
            root.removeHandler(guard)


def export_int8(model_dir: Path, cache: Path, name: str = "") -> Path:
    """Export and quantize ``model_dir`` into ``cache`` (once), returning the export folder.

    Raises:
        ModelNotAvailableError: when the model has no ``tokenizer.json`` or the int8 model's
            vectors differ from fp32 by more than :data:`MIN_COSINE` on the sample.
    """
    target = cache / f"{name or model_dir.name}-{_source_key(model_dir)}"
    if (target / "export.json").exists():
        return target
    if not (model_dir / "tokenizer.json").exists():
        raise ModelNotAvailableError(f"{model_dir} has no tokenizer.json; use embedding.backend = 'torch'")
    torch = require("torch", extra="embed")
    transformers = require("transformers", extra="embed")
    quant = require("onnxruntime.quantization", extra="onnx", package="onnxruntime")
    tmp = cache / f".{target.name}.{os.getpid()}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        model = transformers.AutoModel.from_pretrained(str(model_dir)).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(model_dir))

        class _Hidden(torch.nn.Module):
            def __init__(self, inner: Any):
                super().__init__()
                self.inner = inner

            def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
                return self.inner(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state

        seq = _max_seq_length(model_dir)
        # Computed before the export: after torch.onnx.export the same module gave other outputs
        # (seen with transformers 5), which made a sound export look broken.
        reference = _torch_reference(model, tokenizer, seq, torch)
        enc = tokenizer(list(SAMPLE[:2]), padding=True, return_tensors="pt")
        names = ["input_ids", "attention_mask", "token_type_ids"]
        fp32 = tmp / "model-fp32.onnx"
        int8 = tmp / "model-int8.onnx"
        # The tracer's and the quantizer's advice is for their developers, not for our users.
        with torch.no_grad(), warnings.catch_warnings(), _quiet_root_logger():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                _Hidden(model), tuple(enc[n] for n in names), str(fp32), input_names=names,
                output_names=["last_hidden_state"], opset_version=17, dynamo=False,
                dynamic_axes={n: {0: "batch", 1: "sequence"} for n in [*names, "last_hidden_state"]},
            )
            quant.quantize_dynamic(str(fp32), str(int8), weight_type=quant.QuantType.QInt8,
                                   per_channel=True, op_types_to_quantize=["MatMul"])
        fp32.unlink()
        shutil.copy2(model_dir / "tokenizer.json", tmp / "tokenizer.json")
        candidate = _OnnxRunner(tmp, seq).embed(list(SAMPLE), batch_size=8)
        cosines = [float(sum(a * b for a, b in zip(x, y))) for x, y in zip(reference, candidate)]
        if min(cosines) < MIN_COSINE:
            raise ModelNotAvailableError(
                f"the int8 export of {model_dir.name} drifts from fp32 (min cosine "
                f"{min(cosines):.3f} < {MIN_COSINE}); use embedding.backend = 'torch'"
            )
        meta = {"source": str(model_dir), "export": EXPORT_VERSION, "max_seq_length": seq,
                "sha256": _sha256(int8), "cosine_min": min(cosines),
                "cosine_mean": sum(cosines) / len(cosines),
                "torch": torch.__version__, "onnxruntime": require("onnxruntime", extra="onnx").__version__}
        (tmp / "export.json").write_text(json.dumps(meta, indent=2))
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished the same export first
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _torch_reference(model: Any, tokenizer: Any, seq: int, torch: Any) -> list[list[float]]:
    with torch.no_grad():
        enc = tokenizer(list(SAMPLE), padding=True, truncation=True, max_length=seq,
                        return_tensors="pt")
        hidden = model(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled, dim=1).tolist()


class _OnnxRunner:
    """onnxruntime session + tokenizer: batches by length, mean-pools, normalises."""

    def __init__(self, folder: Path, max_seq_length: int, threads: int = 0):
        ort = require("onnxruntime", extra="onnx")
        tokenizers = require("tokenizers", extra="onnx")
        self.np = require("numpy", extra="onnx")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(folder / "model-int8.onnx"), opts,
                                            providers=["CPUExecutionProvider"])
        self.tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=max_seq_length)
        self.tokenizer.no_padding()
        self.inputs = {i.name for i in self.session.get_inputs()}

    def embed(self, texts: list[str], batch_size: int) -> list[list[float]]:
        np = self.np
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        rows: dict[int, Any] = {}
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            width = max(len(encodings[i].ids) for i in idx)
            ids = np.zeros((len(idx), width), dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                n = len(encodings[i].ids)
                ids[row, :n] = encodings[i].ids
                mask[row, :n] = 1
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            hidden = self.session.run(None, feed)[0]
            m = mask[..., None].astype(np.float32)
            pooled = (hidden * m).sum(1) / np.clip(m.sum(1), 1e-9, None)
            pooled /= np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            for row, i in enumerate(idx):
                rows[i] = pooled[row]
        return [rows[i].tolist() for i in range(len(texts))]


class OnnxInt8Embeddings(Embeddings):
    """Int8 ONNX embeddings of a sentence-transformers model; about twice torch fp32 on AVX-512 VNNI.

    Example:
        >>> from appkit.models.onnx_int8 import OnnxInt8Embeddings
        >>> emb = OnnxInt8Embeddings("/path/to/all-MiniLM-L6-v2", name="all-minilm-l6-v2")
        >>> emb.identity  # nothing is exported or loaded to answer this
        'all-minilm-l6-v2@onnx-int8'

    Args:
        model_path: the sentence-transformers folder (with ``tokenizer.json``).
        name: the catalogue name; the identity is ``name@onnx-int8``.
        batch_size: texts per inference call.
        cache: where exports live (default: the model cache's ``onnx`` folder).
    """

    def __init__(self, model_path: str, *, name: str = "", batch_size: int = 64,
                 cache: str | Path | None = None, threads: int = 0):
        self.model_path = Path(model_path)
        self.name = name or self.model_path.name
        self.batch_size = batch_size
        self.threads = threads
        if cache is None:
            from appkit.models.catalogue import cache_dir

            cache = cache_dir() / "onnx"
        self.cache = Path(cache)
        self._runner: _OnnxRunner | None = None
        self._lock = threading.Lock()

    @property
    def identity(self) -> str:
        return f"{self.name}@onnx-int8"

    def warm_up(self) -> _OnnxRunner:
        """Export (first time only), verify the checksum and open the session."""
        with self._lock:
            if self._runner is None:
                folder = export_int8(self.model_path, self.cache, self.name)
                meta = json.loads((folder / "export.json").read_text())
                if _sha256(folder / "model-int8.onnx") != meta["sha256"]:
                    raise ModelNotAvailableError(
                        f"{folder / 'model-int8.onnx'} does not match its checksum; delete {folder} "
                        "and it is exported again"
                    )
                self._runner = _OnnxRunner(folder, int(meta["max_seq_length"]), self.threads)
            return self._runner

    def tokenize(self, texts: list[str]) -> int:
        """Tokenise ``texts`` as :meth:`embed_documents` does, without inference; returns the
        number of tokens (``appkit bench ingest`` times this apart from inference)."""
        encodings = self.warm_up().tokenizer.encode_batch(list(texts))
        return sum(len(e.ids) for e in encodings)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return self.warm_up().embed(list(texts), self.batch_size)

    def embed_query(self, text: str) -> list[float]:
        return self.warm_up().embed([text], 1)[0]
