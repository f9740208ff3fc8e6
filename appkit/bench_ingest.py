"""``appkit bench ingest FOLDER``: where ingestion time goes, stage by stage.

Two passes over the folder, each into a throw-away store (the profile's store is not touched):

1. **The pipeline** as ``appkit ingest`` runs it (reading and splitting overlapped with embedding):
   its wall time gives the overall chunks/s.
2. **Stage by stage**, one stage at a time on the same files: parse (read and load), split, tokenise
   (the embedder's tokenizer alone), embed (model inference: the embedding call minus its
   tokenisation) and write (Chroma upserts). The largest stage is the one that bounds the pipeline.

The embedding-only ceiling is the time of the embedding calls alone (tokenise + inference): no
pipeline can beat it with this encoder, and ``pipeline overhead = 1 - ceiling time / pipeline time``
says how much the rest of the pipeline costs on top of it.

Example:
    >>> from appkit.bench_ingest import render_ingest_bench
    >>> stage = {"seconds": 1.0, "share": 1.0, "chunks_per_s": 10.0}
    >>> print(render_ingest_bench({"folder": "docs", "embedding_model": "m", "embedding_load_s": 0.1,
    ...     "files": 1, "chunks": 10, "tokens": 90, "skipped": 0, "stages": {"embed": stage},
    ...     "bound_by": "embed", "pipeline": {"seconds": 1.25, "chunks_per_s": 8.0},
    ...     "embedding_ceiling": {"seconds": 1.0, "chunks_per_s": 10.0},
    ...     "pipeline_overhead": 0.2}).splitlines()[3])
    embed          1.000    100%       10.0  <- bounds ingestion
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

from appkit.bench import peak_memory_mb

STAGES = ("parse", "split", "tokenise", "embed", "write")


def run_ingest_bench(folder: str, *, profile_path: str | None = None, profile: Any = None,
                     embeddings: Any = None) -> dict[str, Any]:
    """Measure the ingestion pipeline on ``folder``, overall and stage by stage.

    Args:
        folder: the documents to measure with.
        profile_path: the profile whose embedder and chunking to use (its store is replaced by a
            temporary one).
        profile: a loaded profile instead of ``profile_path``.
        embeddings: an embedder instead of the profile's (tests pass a fake).

    Returns:
        A JSON-ready report; :func:`render_ingest_bench` prints it as a table.
    """
    from appkit.config import find_profile
    from appkit.errors import AppkitError
    from appkit.ingest.pipeline import BATCH_CHUNKS, Ingestor, clean_meta
    from appkit.store.chroma import ChromaStore

    if not Path(folder).is_dir():
        raise AppkitError(f"{folder}: not a folder")
    profile = profile or find_profile(profile_path, create=False)
    if embeddings is None:
        from appkit.models import make_embeddings

        embeddings = make_embeddings(profile)
    report: dict[str, Any] = {"folder": str(Path(folder).resolve()),
                              "embedding_model": str(getattr(embeddings, "identity", "")
                                                     or profile.embedding.model)}
    t0 = time.perf_counter()
    embeddings.embed_query("warm up")  # model load is reported apart from throughput
    report["embedding_load_s"] = round(time.perf_counter() - t0, 3)

    with tempfile.TemporaryDirectory(prefix="appkit-bench-ingest-") as tmp:
        store = dataclasses.replace(profile.store, path=str(Path(tmp) / "pipeline"), host="")
        ingestor = Ingestor(dataclasses.replace(profile, store=store), embeddings=embeddings,
                            progress=False)
        run = ingestor.run([folder])
        files = [Path(p) for p, status in run.files if status == "added"]

        seconds = dict.fromkeys(STAGES, 0.0)
        texts: list[str] = []
        metas: list[dict] = []
        preparer = ingestor.preparer
        for path in files:
            t0 = time.perf_counter()
            docs = preparer.load(path)
            t1 = time.perf_counter()
            chunks = preparer.split(docs)
            seconds["parse"] += t1 - t0
            seconds["split"] += time.perf_counter() - t1
            texts.extend(c.page_content for c in chunks)
            metas.extend(clean_meta(c.metadata) for c in chunks)

        tokenize = getattr(embeddings, "tokenize", None)
        stages_store = ChromaStore(dataclasses.replace(store, path=str(Path(tmp) / "stages")),
                                   Path(tmp) / "stages", embeddings)
        tokens, ceiling = 0, 0.0
        for start in range(0, len(texts), BATCH_CHUNKS):  # the pipeline's batches
            part = texts[start:start + BATCH_CHUNKS]
            t0 = time.perf_counter()
            tokens += tokenize(part) if tokenize else 0
            t1 = time.perf_counter()
            vectors = embeddings.embed_documents(part)
            t2 = time.perf_counter()
            ids = [f"c{i}" for i in range(start, start + len(part))]
            stages_store.upsert(ids, part, metas[start:start + len(part)], vectors)
            seconds["tokenise"] += t1 - t0
            ceiling += t2 - t1
            seconds["write"] += time.perf_counter() - t2
        # The embedding call tokenises too: what is left of it is inference.
        seconds["embed"] = max(0.0, ceiling - seconds["tokenise"])

    n = len(texts)
    staged = sum(seconds.values()) or 1e-9

    def rate(s: float) -> float | None:
        return round(n / s, 1) if s > 0 else None

    report.update(
        files=len(files), chunks=n, tokens=tokens if tokenize else None, skipped=len(run.skipped),
        stages={k: {"seconds": round(v, 4), "share": round(v / staged, 4), "chunks_per_s": rate(v)}
                for k, v in seconds.items()},
        bound_by=max(seconds, key=lambda k: seconds[k]),
        pipeline={"seconds": round(run.seconds, 4), "chunks_per_s": rate(run.seconds)},
        embedding_ceiling={"seconds": round(ceiling, 4), "chunks_per_s": rate(ceiling)},
        pipeline_overhead=round(1 - ceiling / run.seconds, 4) if run.seconds > 0 else None,
        peak_memory_mb=round(peak_memory_mb(), 1),
    )
    if not tokenize:
        report["note"] = "this embedder has no tokenize(); tokenisation is counted in embed"
    return report


def render_ingest_bench(report: dict[str, Any]) -> str:
    """The report as a table of stages, then the pipeline's rate, ceiling and overhead."""
    tokens = f", {report['tokens']} tokens" if report.get("tokens") is not None else ""
    lines = [
        f"folder: {report['folder']}",
        f"embeddings: {report['embedding_model']} (loaded in {report['embedding_load_s']} s); "
        f"{report['files']} files, {report['chunks']} chunks{tokens}, {report['skipped']} skipped",
        f"{'stage':<10} {'seconds':>9} {'share':>7} {'chunks/s':>10}",
    ]
    for name, s in report["stages"].items():
        per_s = f"{s['chunks_per_s']:.1f}" if s["chunks_per_s"] is not None else "-"
        mark = "  <- bounds ingestion" if name == report["bound_by"] else ""
        lines.append(f"{name:<10} {s['seconds']:>9.3f} {s['share']:>7.0%} {per_s:>10}{mark}")
    p, c = report["pipeline"], report["embedding_ceiling"]
    lines.append(f"pipeline: {report['chunks']} chunks in {p['seconds']} s -> "
                 f"{p['chunks_per_s']} chunks/s")
    overhead = report["pipeline_overhead"]
    lines.append(f"embedding-only ceiling: {c['seconds']} s -> {c['chunks_per_s']} chunks/s; "
                 f"pipeline overhead {overhead:.1%}" if overhead is not None else
                 "embedding-only ceiling: nothing was embedded")
    if report.get("note"):
        lines.append(report["note"])
    return "\n".join(lines)
