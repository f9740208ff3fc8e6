"""Ray engine vs the single process: `appkit ingest --engine ray` overhead on this machine, one run.

Corpus: SQuAD v1.1 dev paragraphs as .txt files (as in bench_ingest.py). Both engines use the
profile's default embedder and chunking and an embedded Chroma store in a temporary folder. The
single engine's model is loaded before its clock starts; the Ray engine's time includes its actors
loading the model (each actor loads it once), and Ray's start-up is reported apart. Checks that both
collections hold the same ids (and so the same count).

Usage:
    .venv/bin/python benchmarks/bench_ray.py [--limit N] [--workers 2] [--num-cpus 2]
        [--order single-first|ray-first] [--copies K]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest import SQUAD, write_corpus  # noqa: E402 - the sibling script's corpus


def single_run(folder: Path, store_dir: Path) -> tuple[dict, set]:
    from appkit.config import Profile, StoreConfig
    from appkit.ingest.pipeline import Ingestor
    from appkit.models import make_embeddings

    profile = Profile(store=StoreConfig(path=str(store_dir)))
    emb = make_embeddings(profile)
    emb.embed_query("warm up")
    ingestor = Ingestor(profile, embeddings=emb, progress=False)
    report = ingestor.run([folder])
    ids = set(ingestor.store.collection.get(include=[])["ids"])
    return _summary(report), ids


def ray_run(folder: Path, store_dir: Path, workers: int, num_cpus: int,
            batch_size: int | None = None) -> tuple[dict, set]:
    from appkit.config import Profile, StoreConfig
    from appkit.ingest.ray_engine import RayIngestor, ray_module

    ray = ray_module()
    t0 = time.perf_counter()
    ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    startup = time.perf_counter() - t0
    try:
        profile = Profile(store=StoreConfig(path=str(store_dir)))
        ingestor = RayIngestor(profile, workers=workers, batch_size=batch_size, progress=False)
        report = ingestor.run([folder])
        ids = set(ingestor.store.collection.get(include=[])["ids"])
    finally:
        ray.shutdown()
    return {**_summary(report), "ray_start_s": round(startup, 2)}, ids


def _summary(report) -> dict:
    return {"files": report.added, "chunks": report.chunks_embedded, "seconds": report.seconds,
            "chunks_per_s": report.chunks_embedded / report.seconds, "skipped": len(report.skipped),
            "stages_s": {k: round(v, 2) for k, v in report.timings.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--limit", type=int, default=None, help="paragraphs to use (default all)")
    parser.add_argument("--workers", type=int, default=2, help="embedding actors")
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 1, help="CPUs of the local Ray")
    parser.add_argument("--order", choices=["single-first", "ray-first"], default="single-first")
    parser.add_argument("--copies", type=int, default=1,
                        help="write the corpus this many times (copyN/ sub-folders) for a longer job: "
                             "Ray's fixed start-up cost (actors, model loads, pipeline fill) weighs "
                             "less on a longer job")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="chunks per actor call (default: the engine's)")
    args = parser.parse_args()
    if not SQUAD.exists():
        print(f"missing {SQUAD}", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "squad"
        folder.mkdir()
        (folder / "copy0").mkdir()
        n = write_corpus(folder / "copy0", args.limit)
        for k in range(1, args.copies):
            shutil.copytree(folder / "copy0", folder / f"copy{k}")
        n *= args.copies
        engines = {
            "single": lambda: single_run(folder, Path(tmp) / "single-store"),
            "ray": lambda: ray_run(folder, Path(tmp) / "ray-store", args.workers, args.num_cpus,
                                   args.batch_size),
        }
        names = list(engines) if args.order == "single-first" else list(reversed(engines))
        runs = {name: engines[name]() for name in names}
    (one, one_ids), (ray, ray_ids) = runs["single"], runs["ray"]
    print(f"corpus: {n} SQuAD dev paragraphs as files; ray: {args.workers} workers on "
          f"{args.num_cpus} CPUs (started in {ray['ray_start_s']} s, not counted)")
    for name, r in (("single", one), ("ray", ray)):
        print(f"{name:<7}: {r['chunks']} chunks in {r['seconds']:.1f} s = {r['chunks_per_s']:.1f} "
              f"chunks/s  stages {r['stages_s']}")
    print(f"ray overhead: {one['chunks_per_s'] / ray['chunks_per_s'] - 1:+.1%} time per chunk "
          "vs single (target <= 15%)")
    same = one_ids == ray_ids
    print(f"same collection: {same} ({len(one_ids)} ids single, {len(ray_ids)} ids ray)")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
