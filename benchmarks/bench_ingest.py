"""Ingestion throughput: appkit's Ingestor vs the LangChain reference pipeline, in one run.

Corpus: the 2,067 paragraphs of SQuAD v1.1 dev (../shared/bench/squad/dev-v1.1.json), each written
out as one .txt file. Both pipelines use the packaged all-MiniLM-L6-v2, RecursiveCharacterTextSplitter
(1000, 200) and an embedded Chroma store in a temporary folder. The reference runs it with
sentence-transformers fp32 (``HuggingFaceEmbeddings``); appkit with its default backend (int8 ONNX
when onnxruntime is installed; ``--backend torch`` for fp32). appkit's embedding-only ceiling (the
same chunk texts through the same encoder, nothing else) is measured after its run.

Reference: read files -> RecursiveCharacterTextSplitter -> HuggingFaceEmbeddings ->
``Chroma.from_documents``. Then appkit's first ingest, then appkit's re-ingest of the unchanged folder.

Usage:
    .venv/bin/python benchmarks/bench_ingest.py [--limit N] [--order ref-first|appkit-first]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SQUAD = ROOT.parent / "shared" / "bench" / "squad" / "dev-v1.1.json"


def write_corpus(folder: Path, limit: int | None) -> int:
    data = json.loads(SQUAD.read_text(encoding="utf-8"))["data"]
    n = 0
    for a, article in enumerate(data):
        for p, para in enumerate(article["paragraphs"]):
            if limit is not None and n >= limit:
                return n
            (folder / f"{a:02d}-{p:03d}.txt").write_text(para["context"], encoding="utf-8")
            n += 1
    return n


def reference(folder: Path, store_dir: Path, model_path: str) -> dict:
    from langchain_chroma import Chroma
    from langchain_core.documents import Document
    from langchain_huggingface import HuggingFaceEmbeddings
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    import chromadb

    emb = HuggingFaceEmbeddings(model_name=model_path, model_kwargs={"device": "cpu"},
                                encode_kwargs={"normalize_embeddings": True})
    emb.embed_query("warm up")
    t0 = time.perf_counter()
    docs = [Document(page_content=f.read_text(encoding="utf-8"), metadata={"source": str(f)})
            for f in sorted(folder.iterdir())]
    chunks = RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200).split_documents(docs)
    client = chromadb.PersistentClient(path=str(store_dir),
                                       settings=chromadb.config.Settings(anonymized_telemetry=False))
    Chroma.from_documents(chunks, emb, client=client, collection_name="reference")
    dt = time.perf_counter() - t0
    return {"chunks": len(chunks), "seconds": dt, "chunks_per_s": len(chunks) / dt}


def appkit_run(folder: Path, store_dir: Path, backend: str) -> tuple[dict, dict]:
    from appkit.config import EmbeddingConfig, Profile, StoreConfig
    from appkit.ingest.pipeline import Ingestor
    from appkit.models import make_embeddings

    profile = Profile(store=StoreConfig(path=str(store_dir)),
                      embedding=EmbeddingConfig(backend=backend))
    emb = make_embeddings(profile)
    emb.embed_query("warm up")
    ingestor = Ingestor(profile, embeddings=emb, progress=False)
    first = ingestor.run([folder])
    second = ingestor.run([folder])
    assert second.chunks_embedded == 0, "re-ingest embedded chunks"
    # The embedding-only ceiling: the same chunk texts through the same encoder, nothing else.
    texts = [t for f in sorted(folder.iterdir())
             for t in ingestor.splitter.split_text(f.read_text(encoding="utf-8")) if t.strip()]
    t0 = time.perf_counter()
    emb.embed_documents(texts)
    ceiling_s = time.perf_counter() - t0
    return (
        {"chunks": first.chunks_embedded, "seconds": first.seconds,
         "chunks_per_s": first.chunks_embedded / first.seconds,
         "embedder": getattr(emb, "identity", type(emb).__name__),
         "ceiling_chunks_per_s": len(texts) / ceiling_s,
         "stages_s": {k: round(v, 2) for k, v in first.timings.items()}},
        {"seconds": second.seconds, "unchanged": second.unchanged},
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="paragraphs to use (default all)")
    parser.add_argument("--order", choices=["ref-first", "appkit-first"], default="ref-first")
    parser.add_argument("--backend", choices=["auto", "onnx-int8", "torch"], default="auto",
                        help="appkit's embedding.backend (default: the profile default, auto)")
    args = parser.parse_args()
    if not SQUAD.exists():
        print(f"missing {SQUAD}", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from appkit.models.catalogue import resolve_model

    _, model_path = resolve_model("all-minilm-l6-v2")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "squad"
        folder.mkdir()
        n = write_corpus(folder, args.limit)
        runs = {}
        order = ["reference", "appkit"] if args.order == "ref-first" else ["appkit", "reference"]
        for name in order:
            if name == "reference":
                runs["reference"] = reference(folder, Path(tmp) / "ref-store", str(model_path))
            else:
                runs["appkit"], runs["reingest"] = appkit_run(folder, Path(tmp) / "appkit-store",
                                                              args.backend)
    ref, ours, again = runs["reference"], runs["appkit"], runs["reingest"]
    print(f"corpus: {n} SQuAD dev paragraphs as files")
    print(f"reference  : {ref['chunks']} chunks in {ref['seconds']:.1f} s = {ref['chunks_per_s']:.1f} chunks/s")
    print(f"appkit     : {ours['chunks']} chunks in {ours['seconds']:.1f} s = {ours['chunks_per_s']:.1f} chunks/s"
          f"  stages {ours['stages_s']}")
    print(f"appkit embedder: {ours['embedder']}; embedding-only ceiling "
          f"{ours['ceiling_chunks_per_s']:.1f} chunks/s; pipeline/ceiling "
          f"{ours['chunks_per_s'] / ours['ceiling_chunks_per_s']:.3f} (target >= 0.9)")
    print(f"ratio appkit/reference chunks/s: {ours['chunks_per_s'] / ref['chunks_per_s']:.3f} (target >= 1.5)")
    print(f"re-ingest unchanged: {again['seconds']:.3f} s; first/re-ingest: "
          f"{ours['seconds'] / again['seconds']:.0f}x (target >= 50x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
