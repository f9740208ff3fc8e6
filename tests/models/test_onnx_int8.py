"""The int8 ONNX embedding backend: selection, fp32 agreement, cache and checksum, refusal on switch."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from appkit.config import EmbeddingConfig, Profile, StoreConfig
from appkit.errors import EmbedderMismatchError, ModelNotAvailableError
from appkit.ingest.pipeline import Ingestor
from appkit.models.onnx_int8 import OnnxInt8Embeddings
from appkit.testing import HashingEmbeddings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "docs"


def test_identity_names_the_backend_without_loading(tmp_path):
    emb = OnnxInt8Embeddings(str(tmp_path / "no-model-here"), name="all-minilm-l6-v2", cache=tmp_path)
    assert emb.identity == "all-minilm-l6-v2@onnx-int8"
    assert emb._runner is None


def test_auto_picks_int8_when_onnxruntime_is_installed(monkeypatch):
    import appkit.models as models

    monkeypatch.setattr(models, "_onnx_available", lambda: True)
    cfg = EmbeddingConfig(backend="auto")
    assert isinstance(models._build_embeddings("/m", "minilm", cfg), OnnxInt8Embeddings)
    monkeypatch.setattr(models, "_onnx_available", lambda: False)
    assert models._build_embeddings("/m", "minilm", cfg).identity == "minilm"


def test_the_default_backend_is_auto():
    assert Profile().embedding.backend == "auto"


def test_switching_backend_on_a_collection_is_refused_with_the_reembed_command(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("the budget was approved in March")
    profile = Profile(store=StoreConfig(path=str(tmp_path / "store")))
    Ingestor(profile, embeddings=HashingEmbeddings(identity="all-minilm-l6-v2")).run([docs])
    int8 = HashingEmbeddings(identity="all-minilm-l6-v2@onnx-int8")
    with pytest.raises(EmbedderMismatchError) as err:
        Ingestor(profile, embeddings=int8).run([docs])
    assert "appkit ingest --reembed" in str(err.value)
    assert "all-minilm-l6-v2@onnx-int8" in str(err.value)


# --- the real packaged MiniLM (one export into a temporary cache, shared by the tests below) ---


@pytest.fixture(scope="module")
def minilm():
    from appkit.models.catalogue import resolve_model

    _, path = resolve_model("all-minilm-l6-v2")
    return Path(path)


@pytest.fixture(scope="module")
def exported(minilm, tmp_path_factory):
    cache = tmp_path_factory.mktemp("onnx-cache")
    emb = OnnxInt8Embeddings(str(minilm), name="all-minilm-l6-v2", cache=cache, batch_size=8)
    emb.warm_up()
    return emb


def fixture_texts() -> list[str]:
    texts = []
    for path in sorted(EXAMPLES.rglob("*.md")) + sorted(EXAMPLES.rglob("*.txt")):
        text = path.read_text(encoding="utf-8")
        texts.append(text)  # whole documents, and each line on its own
        texts += [line for line in text.splitlines() if len(line) > 30]
    return [t for t in texts if t.strip()][:24]


@pytest.mark.slow
def test_int8_matches_fp32_within_a_cosine_bound(exported, minilm):
    from appkit.models.sentence_transformers import SentenceTransformerEmbeddings

    texts = fixture_texts()
    assert len(texts) >= 8
    fp32 = SentenceTransformerEmbeddings(str(minilm), name="all-minilm-l6-v2").embed_documents(texts)
    int8 = exported.embed_documents(texts)
    cosines = [sum(a * b for a, b in zip(x, y)) for x, y in zip(fp32, int8)]
    assert min(cosines) >= 0.97, min(cosines)
    assert sum(cosines) / len(cosines) >= 0.985
    query = exported.embed_query("What did we decide about the Q3 budget?")
    assert len(query) == 384 and abs(sum(v * v for v in query) - 1) < 1e-3


@pytest.mark.slow
def test_the_export_is_cached_and_records_its_check(exported, minilm):
    from appkit.models.onnx_int8 import export_int8

    t0 = time.perf_counter()
    folder = export_int8(minilm, exported.cache, "all-minilm-l6-v2")
    assert time.perf_counter() - t0 < 1.0  # reused, not exported again
    meta = json.loads((folder / "export.json").read_text())
    assert meta["cosine_min"] >= 0.97 and len(meta["sha256"]) == 64
    assert sorted(p.name for p in folder.iterdir()) == ["export.json", "model-int8.onnx", "tokenizer.json"]


@pytest.mark.slow
def test_a_tampered_export_is_refused(exported, minilm, tmp_path):
    import shutil

    from appkit.models.onnx_int8 import export_int8

    cache = tmp_path / "cache"
    src = export_int8(minilm, exported.cache, "all-minilm-l6-v2")
    shutil.copytree(src, cache / src.name)
    model = cache / src.name / "model-int8.onnx"
    data = bytearray(model.read_bytes())
    data[-100] ^= 0xFF
    model.write_bytes(bytes(data))
    emb = OnnxInt8Embeddings(str(minilm), name="all-minilm-l6-v2", cache=cache)
    with pytest.raises(ModelNotAvailableError, match="checksum"):
        emb.embed_query("hello")


def test_a_model_without_tokenizer_json_gets_a_clear_error(tmp_path):
    pytest.importorskip("onnxruntime")
    folder = tmp_path / "model"
    folder.mkdir()
    emb = OnnxInt8Embeddings(str(folder), name="odd", cache=tmp_path / "cache")
    with pytest.raises(ModelNotAvailableError, match="tokenizer.json"):
        emb.embed_query("hello")


@pytest.mark.slow
def test_long_texts_are_truncated_not_refused(exported):
    [vector] = exported.embed_documents(["word " * 5000])
    assert len(vector) == 384
