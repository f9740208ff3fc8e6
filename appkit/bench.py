"""``appkit bench FOLDER``: what this laptop does with your own documents and models.

Ingests the folder into a throw-away store (your profile's store is not touched) and reports files/s
and chunks/s, embedding batch throughput, retrieval p50/p95, time to first token, generation tokens/s
and the process's peak memory.

Example:
    >>> from appkit.bench import percentile
    >>> percentile([1.0, 2.0, 3.0, 4.0], 50)
    2.5
"""

from __future__ import annotations

import dataclasses
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in 0..100) of a non-empty list."""
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def run_bench(folder: str, *, profile_path: str | None = None, questions: int = 3,
              retrieval_queries: int = 50) -> dict[str, Any]:
    """Measure ingestion, embedding, retrieval and generation on ``folder``.

    Args:
        folder: the documents to measure with.
        profile_path: the profile whose models and settings to use (the store is replaced by a
            temporary one).
        questions: questions to time the chat model with (0 skips generation).
        retrieval_queries: queries for the retrieval latency percentiles.
    """
    from appkit.app import App
    from appkit.config import find_profile

    profile = find_profile(profile_path, create=False)
    report: dict[str, Any] = {"folder": str(Path(folder).resolve()),
                              "chat_model": profile.chat.model,
                              "embedding_model": profile.embedding.model}
    with tempfile.TemporaryDirectory(prefix="appkit-bench-") as tmp:
        profile = dataclasses.replace(profile, store=dataclasses.replace(profile.store, path=tmp,
                                                                        host=""))
        app = App(profile)
        t0 = time.perf_counter()
        app.embeddings.embed_query("warm up")  # model load is reported apart from throughput
        report["embedding_load_s"] = round(time.perf_counter() - t0, 2)

        ingest = app.ingest([folder])
        files = ingest.added + ingest.updated
        report["ingest"] = {
            "files": files, "chunks": ingest.chunks_embedded, "skipped": len(ingest.skipped),
            "seconds": round(ingest.seconds, 2),
            "files_per_s": round(files / ingest.seconds, 2) if ingest.seconds else None,
            "chunks_per_s": round(ingest.chunks_embedded / ingest.seconds, 2) if ingest.seconds else None,
            "stages_s": {k: round(v, 2) for k, v in ingest.timings.items()},
        }
        chunks = app.store.get(limit=max(256, retrieval_queries))
        if not chunks:
            report["note"] = "nothing was ingested; no retrieval or generation measured"
            report["peak_memory_mb"] = round(peak_memory_mb(), 1)
            return report
        texts = [c.page_content for c in chunks][:256]
        t0 = time.perf_counter()
        app.embeddings.embed_documents(texts)
        dt = time.perf_counter() - t0
        report["embedding_throughput_per_s"] = round(len(texts) / dt, 2)

        queries = [" ".join(c.page_content.split()[:12]) for c in chunks][:retrieval_queries]
        app.retriever.invoke(queries[0])  # the first query opens the index; not a steady-state cost
        latencies = []
        for q in queries:
            t0 = time.perf_counter()
            app.retriever.invoke(q)
            latencies.append((time.perf_counter() - t0) * 1000)
        report["retrieval_ms"] = {"p50": round(percentile(latencies, 50), 2),
                                  "p95": round(percentile(latencies, 95), 2),
                                  "queries": len(latencies)}
        if questions > 0:
            t0 = time.perf_counter()
            app.chat_model.invoke("Say hello.", max_tokens=1)
            report["chat_load_s"] = round(time.perf_counter() - t0, 2)
            ttft, rates = [], []
            for q in queries[:questions]:
                answer = app.ask(f"What does the text say about: {q}?")
                ttft.append(answer.timings.get("first_token", 0.0))
                gen = answer.timings.get("generate", 0.0)
                out = answer.usage.get("output_tokens", 0)
                if gen and out:
                    rates.append(out / gen)
            report["time_to_first_token_s"] = {"p50": round(percentile(ttft, 50), 3),
                                               "max": round(max(ttft), 3)} if ttft else None
            report["generation_tokens_per_s"] = round(sum(rates) / len(rates), 2) if rates else None
        report["peak_memory_mb"] = round(peak_memory_mb(), 1)
    return report


def render(report: dict[str, Any]) -> str:
    ing = report["ingest"]
    lines = [
        f"folder: {report['folder']}",
        f"models: chat {report['chat_model']}, embeddings {report['embedding_model']} "
        f"(loaded in {report['embedding_load_s']} s)",
        f"ingest: {ing['files']} files, {ing['chunks']} chunks in {ing['seconds']} s -> "
        f"{ing['files_per_s']} files/s, {ing['chunks_per_s']} chunks/s "
        f"({ing['skipped']} skipped)",
        "  stages: " + ", ".join(f"{k} {v} s" for k, v in ing["stages_s"].items()),
    ]
    if "embedding_throughput_per_s" in report:
        lines.append(f"embedding batch throughput: {report['embedding_throughput_per_s']} texts/s")
        r = report["retrieval_ms"]
        lines.append(f"retrieval: p50 {r['p50']} ms, p95 {r['p95']} ms over {r['queries']} queries")
    if report.get("time_to_first_token_s"):
        lines.append(f"chat model loaded in {report['chat_load_s']} s; time to first token "
                     f"p50 {report['time_to_first_token_s']['p50']} s; generation "
                     f"{report['generation_tokens_per_s']} tokens/s")
    if report.get("note"):
        lines.append(report["note"])
    lines.append(f"peak memory: {report['peak_memory_mb']} MB")
    return "\n".join(lines)
