"""Ingestion at scale: chunks/s at 10k vs 100k chunks, memory over the run, unchanged re-ingest.

Corpus: a synthetic folder built from the sentences of SQuAD v1.1 dev (read from
``../shared/bench/squad/dev-v1.1.json``, never copied into the repository), reshuffled with a fixed
seed into files of about ``--file-chars`` characters, under ``benchmarks/out/scale/`` (gitignored).
The profile is the default (int8 ONNX MiniLM when onnxruntime is installed, embedded Chroma) with
``chunk_size = --chunk-size`` and no overlap, so the chunk count is predictable and 100k chunks
embed in minutes rather than an hour on 2 cores.

Runs, one after the other, in fresh stores:
1. the first ``--small`` chunks' worth of files (a prefix of the big folder): chunks/s at 10k;
2. the whole folder (``--large`` chunks): chunks/s at 100k, with resident memory sampled every
   second, printed at each tenth of the run (flat means streaming works);
3. the small run again, into another fresh store: this host's speed drifts by tens of percent
   over the quarter hour the large run takes, so the 10k rate is the mean of one measurement
   before and one after the large run (each ratio is printed too; ``--no-bracket`` skips it);
4. the whole folder again, unchanged: the re-ingest speed-up.

Usage:
    .venv/bin/python benchmarks/bench_ingest_scale.py                     # 10k vs 100k
    .venv/bin/python benchmarks/bench_ingest_scale.py --small 1000 --large 5000   # a quick look
    chroma run --path /tmp/scale-server --port 8123 &                    # client/server: the
    .venv/bin/python benchmarks/bench_ingest_scale.py --host 127.0.0.1 --port 8123  # vectors live
                                                                         # in the server process
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import random
import re
import shutil
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SQUAD = REPO.parent / "shared" / "bench" / "squad" / "dev-v1.1.json"
OUT = REPO / "benchmarks" / "out" / "scale"

os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def sentences() -> list[str]:
    data = json.loads(SQUAD.read_text(encoding="utf-8"))["data"]
    out = []
    for article in data:
        for para in article["paragraphs"]:
            out.extend(s.strip() for s in re.split(r"(?<=[.!?])\s+", para["context"]) if len(s) > 20)
    return out


def write_folder(folder: Path, files: int, file_chars: int, seed: int = 0) -> None:
    """``files`` text files of about ``file_chars`` characters each, 100 to a sub-folder."""
    marker = folder / ".complete"
    if marker.exists() and marker.read_text() == f"{files}/{file_chars}/{seed}":
        return
    shutil.rmtree(folder, ignore_errors=True)
    pool = sentences()
    rng = random.Random(seed)
    for i in range(files):
        parts, size = [], 0
        while size < file_chars:
            s = pool[rng.randrange(len(pool))]
            parts.append(s)
            size += len(s) + 1
        path = folder / f"d{i // 100:04d}" / f"f{i:06d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(" ".join(parts), encoding="utf-8")
    marker.write_text(f"{files}/{file_chars}/{seed}")


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class MemorySampler:
    """Samples this process's resident memory every second while a run goes on."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        t0 = time.perf_counter()
        while not self._stop.is_set():
            self.samples.append((time.perf_counter() - t0, rss_mb()))
            self._stop.wait(1.0)

    def __enter__(self) -> "MemorySampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def deciles(self) -> list[float]:
        if not self.samples:
            return []
        n = len(self.samples)
        return [round(self.samples[min(n - 1, (n * k) // 10)][1]) for k in range(1, 11)]


def ingest(profile, folders: list[Path]) -> tuple[object, MemorySampler]:  # noqa: ANN001
    from appkit.ingest.pipeline import Ingestor
    from appkit.models import make_embeddings

    emb = make_embeddings(profile)
    emb.embed_query("warm up")
    with MemorySampler() as mem:
        report = Ingestor(profile, embeddings=emb, progress=False).run([str(f) for f in folders])
    return report, mem


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", type=int, default=10_000, help="chunks in the small run")
    ap.add_argument("--large", type=int, default=100_000, help="chunks in the large run")
    ap.add_argument("--chunk-size", type=int, default=400)
    ap.add_argument("--file-chars", type=int, default=3_600)
    ap.add_argument("--host", default="", help="a Chroma server (chroma run) instead of embedded")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--skip-small", action="store_true", help="only the large run and re-ingest")
    ap.add_argument("--no-bracket", dest="bracket", action="store_false",
                    help="measure the small run only before the large one, not also after it")
    args = ap.parse_args()

    from appkit.config import Profile, RetrievalConfig, StoreConfig

    per_file = max(1, round(args.file_chars / args.chunk_size))  # measured below, not assumed
    corpus = OUT / "corpus"
    write_folder(corpus, args.large // per_file, args.file_chars)
    subdirs = sorted(p for p in corpus.iterdir() if p.is_dir())
    small_dirs = subdirs[: max(1, len(subdirs) * args.small // args.large)]

    def profile(name: str) -> Profile:
        store = OUT / name
        shutil.rmtree(store, ignore_errors=True)
        cfg = StoreConfig(path=str(store))
        if args.host:
            import chromadb

            cfg = StoreConfig(path=str(store), host=args.host, port=args.port, collection=name)
            client = chromadb.HttpClient(host=args.host, port=args.port)
            if name in [c.name for c in client.list_collections()]:
                client.delete_collection(name)
        return Profile(store=cfg, retrieval=dataclasses.replace(
            RetrievalConfig(), chunk_size=args.chunk_size, chunk_overlap=0))

    results = {"store": f"chroma server {args.host}:{args.port}" if args.host else "embedded"}

    def summary(report, mem: MemorySampler) -> dict:  # noqa: ANN001
        return {"chunks": report.chunks_embedded, "seconds": round(report.seconds, 1),
                "chunks_per_s": round(report.chunks_embedded / report.seconds, 1),
                "peak_rss_mb": round(max(m for _, m in mem.samples)),
                "stages_s": {k: round(v, 1) for k, v in report.timings.items()}}

    def small_run(key: str) -> None:
        results[key] = summary(*ingest(profile(f"store-{key}"), small_dirs))
        print(json.dumps({key: results[key]}), flush=True)

    if not args.skip_small:
        small_run("small")
    big_profile = profile("store-large")
    large, mem_large = ingest(big_profile, subdirs)
    results["large"] = {**summary(large, mem_large), "rss_mb_by_tenth": mem_large.deciles()}
    print(json.dumps({"large": results["large"]}), flush=True)
    if not args.skip_small and args.bracket:
        small_run("small_after")
    again, _ = ingest(big_profile, subdirs)
    assert again.chunks_embedded == 0, "re-ingest embedded chunks"
    results["reingest"] = {"seconds": round(again.seconds, 2), "unchanged": again.unchanged}
    if "small" in results:
        large_rate = results["large"]["chunks_per_s"]
        smalls = [results[k]["chunks_per_s"] for k in ("small", "small_after") if k in results]
        results["ratio_rate_large_vs_small"] = round(large_rate / (sum(smalls) / len(smalls)), 3)
        if len(smalls) == 2:
            results["ratio_vs_small_before"] = round(large_rate / smalls[0], 3)
            results["ratio_vs_small_after"] = round(large_rate / smalls[1], 3)
    results["ratio_first_vs_reingest"] = round(large.seconds / again.seconds, 1)
    results["command"] = "benchmarks/bench_ingest_scale.py " + " ".join(sys.argv[1:])
    out = OUT / ("results-server.json" if args.host else "results.json")
    out.write_text(json.dumps(results, indent=2), encoding="utf-8")
    print(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
