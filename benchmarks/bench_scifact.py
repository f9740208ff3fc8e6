"""SciFact benchmark of the retrievers layer: quality, reranker cost, latency and BM25 memory.

Every retriever runs through the real code path (``retrievers.registry.build_pipeline`` over a
``ChromaStore`` holding SciFact, one chunk per abstract) and runs are scored with ranx. Settings are
chosen on a dev split carved from ``qrels/train.tsv`` (20 % of its queries, seed 13); the encoder and
the cross-encoder are trained on the other 80 %; the test qrels are only ever scored.

    .venv/bin/python benchmarks/bench_scifact.py tune      # grid on dev: fusion weights, rrf k, depth
    .venv/bin/python benchmarks/bench_scifact.py train     # pairs from train split; encoder + reranker
    .venv/bin/python benchmarks/bench_scifact.py quality   # every retriever on dev and test
    .venv/bin/python benchmarks/bench_scifact.py latency   # p50/p95 at 5k and 100k chunks, BM25 memory

Data is read from ../shared/bench/scifact (never copied). Corpus embeddings, stores, trained models and
JSON results are cached under benchmarks/out/ (git-ignored); APPKIT_CACHE points there too, so the
trained models land in a benchmark-only catalogue.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = (ROOT / ".." / "shared" / "bench" / "scifact").resolve()
OUT = HERE / "out"
os.environ.setdefault("APPKIT_CACHE", str(OUT / "cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
sys.path.insert(0, str(ROOT))

from langchain_core.embeddings import Embeddings  # noqa: E402

from appkit.config import Profile, RetrievalConfig, RetrieversConfig, StoreConfig  # noqa: E402
from appkit.retrieval import RetrieverContext  # noqa: E402

SEED = 13
DEV_FRACTION = 0.2
BASE = "all-minilm-l6-v2"
METRICS = ["ndcg@10", "mrr@10", "recall@100"]


def log(*a: Any) -> None:
    print(*a, file=sys.stderr, flush=True)


# --- data ------------------------------------------------------------------------------------------


def load_corpus() -> tuple[list[str], list[str]]:
    """(doc ids, 'title text' strings) in file order."""
    ids, texts = [], []
    with open(DATA / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            ids.append(str(d["_id"]))
            texts.append(f"{d.get('title', '')} {d.get('text', '')}".strip())
    return ids, texts


def load_queries() -> dict[str, str]:
    with open(DATA / "queries.jsonl", encoding="utf-8") as fh:
        return {str(q["_id"]): q["text"] for q in map(json.loads, fh)}


def load_qrels(name: str) -> dict[str, dict[str, int]]:
    from retrievers.train import read_qrels

    return read_qrels(DATA / "qrels" / f"{name}.tsv")


def splits() -> dict[str, dict[str, dict[str, int]]]:
    """train (80 % of train.tsv queries), dev (the other 20 %), test (test.tsv)."""
    train = load_qrels("train")
    qids = sorted(train)
    random.Random(SEED).shuffle(qids)
    n_dev = int(len(qids) * DEV_FRACTION)
    dev = set(qids[:n_dev])
    return {"train": {q: r for q, r in train.items() if q not in dev},
            "dev": {q: r for q, r in train.items() if q in dev},
            "test": load_qrels("test")}


# --- embeddings and stores -------------------------------------------------------------------------


def model_dir(name: str) -> str:
    from appkit.models.catalogue import resolve_model

    return str(resolve_model(name)[1])


def model_key(path: str, max_seq_length: int = 256) -> str:
    p = Path(path)
    weights = p / "model.safetensors"
    stamp = f"{p.resolve()}|{weights.stat().st_size if weights.exists() else 0}|" \
            f"{weights.stat().st_mtime_ns if weights.exists() else 0}|{max_seq_length}"
    return f"{p.name}-{hashlib.sha1(stamp.encode()).hexdigest()[:10]}"


_st_models: dict[str, Any] = {}


def st_model(path: str) -> Any:
    if path not in _st_models:
        from sentence_transformers import SentenceTransformer

        m = SentenceTransformer(path, device="cpu", local_files_only=True)
        m.max_seq_length = 256
        _st_models[path] = m
    return _st_models[path]


_int8_models: dict[str, Any] = {}


def encode(path: str, texts: list[str], backend: str = "torch") -> np.ndarray:
    """Normalised vectors: sentence-transformers fp32 (``torch``) or appkit's ``onnx-int8`` encoder
    (what the default ``embedding.backend = "auto"`` picks on this CPU)."""
    if backend == "onnx-int8":
        if path not in _int8_models:
            from appkit.models.onnx_int8 import OnnxInt8Embeddings

            _int8_models[path] = OnnxInt8Embeddings(path, name=Path(path).name, batch_size=16)
        vecs = np.asarray(_int8_models[path].embed_documents(texts), dtype=np.float32)
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    return st_model(path).encode(texts, batch_size=64, normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False).astype(np.float32)


def backend_key(path: str, backend: str = "torch") -> str:
    return model_key(path) + ("-int8" if backend == "onnx-int8" else "")


def corpus_embeddings(path: str, backend: str = "torch") -> np.ndarray:
    """Normalised corpus vectors for a model, computed once and cached under out/emb/."""
    cache = OUT / "emb" / f"{backend_key(path, backend)}.npy"
    if cache.exists():
        return np.load(cache)
    _, texts = load_corpus()
    t0 = time.perf_counter()
    vecs = encode(path, texts, backend)
    log(f"embedded {len(texts)} passages in {time.perf_counter() - t0:.0f}s ({path})")
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npy")
    np.save(tmp, vecs)
    os.replace(tmp, cache)
    return vecs


class CachedQueryEmbeddings(Embeddings):
    """The real model for queries, memoised (every configuration re-asks the same queries).

    ``memo=False`` embeds every query afresh, as the application does (for latency).
    """

    def __init__(self, path: str, memo: bool = True, backend: str = "torch"):
        self.path = path
        self.backend = backend
        self.identity = backend_key(path, backend)
        self.memo = memo
        self._memo: dict[str, list[float]] = {}

    def preload(self, texts: list[str]) -> None:
        todo = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if todo:
            vecs = encode(self.path, todo, self.backend)
            self._memo.update({t: v.tolist() for t, v in zip(todo, vecs)})

    def encode_one(self, text: str) -> list[float]:
        return encode(self.path, [text], self.backend)[0].tolist()

    def embed_query(self, text: str) -> list[float]:
        if not self.memo:
            return self.encode_one(text)
        if text not in self._memo:
            self.preload([text])
        return self._memo[text]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.preload(texts)
        return [self._memo[t] for t in texts]


def scifact_store(model: str, backend: str = "torch") -> tuple[Any, Profile]:
    """A Chroma store holding SciFact embedded with ``model`` (built once), and its profile."""
    from appkit.ingest.manifest import Manifest
    from appkit.store.chroma import ChromaStore

    path = model_dir(model)
    key = backend_key(path, backend)
    data_dir = OUT / "stores" / key
    profile = Profile(store=StoreConfig(path=str(data_dir), collection="scifact"))
    emb = CachedQueryEmbeddings(path, backend=backend)
    store = ChromaStore(profile.store, data_dir, emb)
    ids, texts = load_corpus()
    if store.count() != len(ids):
        vecs = corpus_embeddings(path, backend)
        t0 = time.perf_counter()
        store.upsert(ids, texts, [{"source": i, "file_type": "scifact", "chunk_index": 0}
                                  for i in ids], vecs)
        Manifest(data_dir / "manifest.sqlite").bump_generation()
        log(f"stored {len(ids)} chunks in Chroma in {time.perf_counter() - t0:.0f}s")
    qcache = OUT / "emb" / f"{key}-queries.json"
    if qcache.exists():
        emb._memo.update(json.loads(qcache.read_text()))
    else:
        emb.preload(list(load_queries().values()))
        qcache.write_text(json.dumps(emb._memo))
    return store, profile


# --- configurations and scoring --------------------------------------------------------------------


def make(store: Any, profile: Profile, stage: str, *, k: int, rerank: bool = False,
         **cfg: Any) -> Any:
    from retrievers.registry import build_pipeline

    p = dataclasses.replace(profile, retrieval=RetrievalConfig(k=k),
                            retrievers=dataclasses.replace(RetrieversConfig(), **cfg))
    return build_pipeline(RetrieverContext(p, store, None), stage, rerank=rerank)


def run_of(retriever: Any, queries: dict[str, str], qids: list[str], k: int,
           times: list[float] | None = None) -> dict[str, dict[str, float]]:
    """A ranx-style run {qid: {doc: score}}; scores decrease with rank (ties broken by rank)."""
    run = {}
    for q in qids:
        t0 = time.perf_counter()
        docs = retriever.invoke(queries[q], k=k)
        if times is not None:
            times.append(time.perf_counter() - t0)
        run[q] = {str(d.metadata.get("source", d.id)): float(len(docs) - r)
                  for r, d in enumerate(docs)}
    return run


def measured(retriever: Any, queries: dict[str, str], qids: list[str], qrels: dict,
             times: list[float] | None = None) -> dict[str, float]:
    """nDCG@10 and MRR@10 from asking for 10 chunks, Recall@100 from asking for 100.

    Two runs because a hybrid retriever draws ``max(candidates, k)`` chunks from each side: asked
    for 100 it would fuse 100 candidates, not the profile's 50, and rank its top 10 differently
    from an application asking for a handful. ``times`` gets the 10-chunk run's per-query times.
    """
    top = score(run_of(retriever, queries, qids, 10, times), qrels, ["ndcg@10", "mrr@10"])
    deep = score(run_of(retriever, queries, qids, 100), qrels, ["recall@100"])
    return {**top, **deep}


def score(run: dict, qrels: dict, metrics: list[str] = METRICS) -> dict[str, float]:
    from ranx import Qrels, Run, evaluate

    qrels = {q: r for q, r in qrels.items() if q in run}
    run = {q: (r if r else {"__none__": 0.0}) for q, r in run.items()}
    res = evaluate(Qrels(qrels), Run(run), metrics, make_comparable=True)
    if len(metrics) == 1:  # ranx returns a bare number for one metric
        res = {metrics[0]: res}
    return {m: round(float(res[m]), 4) for m in metrics}


def results_file(name: str) -> Path:
    return OUT / "results" / f"{name}.json"


def save(name: str, data: Any) -> None:
    p = results_file(name)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=2))
    log(f"wrote {p}")


def load(name: str) -> Any:
    p = results_file(name)
    return json.loads(p.read_text()) if p.exists() else None


# --- commands --------------------------------------------------------------------------------------


def cmd_tune(args: argparse.Namespace) -> None:
    """Grid over fusion settings on dev for one encoder; writes out/results/tune-<model>.json."""
    sp = splits()
    queries = load_queries()
    store, profile = scifact_store(args.model, args.backend)
    dev = sorted(sp["dev"])
    rows = []
    for stage in ("dense", "bm25"):
        run = run_of(make(store, profile, stage, k=100), queries, dev, 100)
        rows.append({"stage": stage, **score(run, sp["dev"])})
        log(rows[-1])
    grid = ((50,), (10, 60), (0.5, 1.0, 1.5, 2.0)) if args.quick else \
        ((50, 100), (10, 30, 60), (0.5, 0.75, 1.0, 1.25, 1.5, 2.0))
    settings = [dict(fusion="rrf", candidates=c, rrf_k=rrf_k, dense_weight=dw, bm25_weight=1.0)
                for c in grid[0] for rrf_k in grid[1] for dw in grid[2]]
    # Convex combination: the dense share alpha, BM25 1 - alpha (rrf_k plays no part).
    alphas = (0.25, 0.35, 0.45) if args.quick else (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)
    settings += [dict(fusion="convex", candidates=c, rrf_k=10, dense_weight=a,
                      bm25_weight=round(1 - a, 2)) for c in grid[0] for a in alphas]
    for cfg in settings:  # ranked as an application asks: top 10 from the profile's candidates
        run = run_of(make(store, profile, "hybrid", k=10, **cfg), queries, dev, 10)
        rows.append({"stage": "hybrid", **cfg, **score(run, sp["dev"], ["ndcg@10", "mrr@10"])})
        log(rows[-1])
    hybrid = [r for r in rows if r["stage"] == "hybrid"]
    best = max(hybrid, key=lambda r: r["ndcg@10"])
    best_rrf = max((r for r in hybrid if r["fusion"] == "rrf"), key=lambda r: r["ndcg@10"])
    save(tune_name(args.model, args.backend), {"model": args.model, "backend": args.backend,
                                               "rows": rows, "best": best, "best_rrf": best_rrf})
    log("best on dev:", best)


FUSION_KEYS = ("fusion", "candidates", "rrf_k", "dense_weight", "bm25_weight")


def tune_name(model: str, backend: str = "torch") -> str:
    return f"tune-{model}" + ("-int8" if backend == "onnx-int8" else "")


def best_fusion(model: str, which: str = "best", backend: str = "torch") -> dict[str, Any]:
    """The fusion settings chosen on dev for ``model`` (run ``tune --model`` first).

    ``which`` is ``best`` (either fusion) or ``best_rrf`` (the best reciprocal rank fusion).
    """
    tuned = load(tune_name(model, backend))
    if not tuned or which not in tuned:
        raise SystemExit(f"run: bench_scifact.py tune --model {model} --backend {backend}")
    return {k: tuned[which].get(k, "rrf") for k in FUSION_KEYS}


class CachedReranker:
    """A cross-encoder whose scores are memoised on disk per (query, passage): the N sweep and the
    two first stages share most pairs, and the CPU is slow."""

    def __init__(self, name: str):
        from retrievers.rerank import CrossEncoderReranker

        self.inner = CrossEncoderReranker(name)
        self.file = OUT / "ce-cache" / f"{model_key(model_dir(name))}.json"
        self.memo: dict[str, float] = json.loads(self.file.read_text()) if self.file.exists() else {}
        self.computed = 0

    @staticmethod
    def key(query: str, text: str) -> str:
        return hashlib.sha1(f"{query}\x00{text}".encode()).hexdigest()

    def score(self, query: str, texts: list[str]) -> list[float]:
        todo = [t for t in texts if self.key(query, t) not in self.memo]
        if todo:
            for t, s in zip(todo, self.inner.score(query, todo)):
                self.memo[self.key(query, t)] = s
            self.computed += len(todo)
            if self.computed >= 500:
                self.flush()
        return [self.memo[self.key(query, t)] for t in texts]

    def flush(self) -> None:
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.memo))
        os.replace(tmp, self.file)
        self.computed = 0


def reranked(store: Any, profile: Profile, reranker: Any, n: int, k: int = 10, blend: float = 0.0,
             **fusion: Any) -> Any:
    """The rerank pipeline (hybrid first stage) with ``reranker`` plugged in."""
    r = make(store, profile, "hybrid", k=k, rerank=True, rerank_candidates=n, rerank_blend=blend,
             **fusion)
    r.reranker = reranker
    return r


def cmd_rerank_sweep(args: argparse.Namespace) -> None:
    """On dev: nDCG@10 and latency for N reranked candidates; picks N."""
    sp = splits()
    queries = load_queries()
    dev = sorted(sp["dev"])
    store, profile = scifact_store(args.model)
    fusion = best_fusion(args.model)
    ce = CachedReranker(args.reranker)
    rows = []
    base = run_of(make(store, profile, "hybrid", k=10, **fusion), queries, dev, 10)
    rows.append({"n": 0, **score(base, sp["dev"], ["ndcg@10", "mrr@10"])})
    for n in sorted(args.n, reverse=True):  # the largest N scores every pair the others need
        for blend in args.blend:
            run = run_of(reranked(store, profile, ce, n, blend=blend, **fusion), queries, dev, 10)
            ce.flush()
            rows.append({"n": n, "blend": blend, **score(run, sp["dev"], ["ndcg@10", "mrr@10"])})
            log(rows[-1])
    best = max(rows, key=lambda r: r["ndcg@10"])
    save(f"rerank-sweep-{args.model}-{args.reranker}", {"rows": rows, "best_n": best["n"],
                                                        "best_blend": best.get("blend", 0.0),
                                                        "fusion": fusion})


UNTUNED = dict(fusion="rrf", candidates=100, rrf_k=60, dense_weight=1.0, bm25_weight=1.0)


def cmd_quality(args: argparse.Namespace) -> None:
    """Every retriever and combination on dev and test; writes out/results/quality.json."""
    sp = splits()
    queries = load_queries()
    tuned_enc = args.encoder
    have_tuned = tuned_enc and load(tune_name(tuned_enc)) is not None
    base_store, base_profile = scifact_store(BASE)
    defaults = RetrieversConfig()
    chosen = best_fusion(BASE)
    if {k: getattr(defaults, k) for k in chosen} != chosen:
        log(f"note: profile defaults {defaults} differ from the dev choice {chosen}")
    configs: list[tuple[str, str, Any]] = [
        ("bm25", "bm25 (bm25s, stopwords + Snowball stemming)",
         lambda: make(base_store, base_profile, "bm25", k=100)),
        ("dense", "dense MiniLM (all-MiniLM-L6-v2)",
         lambda: make(base_store, base_profile, "dense", k=100)),
        ("mmr", "dense MiniLM + MMR (lambda 0.5, fetch 100)",
         lambda: make(base_store, base_profile, "mmr", k=100, candidates=100)),
        ("hybrid-untuned", "hybrid RRF, untuned (weights 1:1, k=60)",
         lambda: make(base_store, base_profile, "hybrid", k=100, **UNTUNED)),
        ("hybrid-rrf", "hybrid RRF, tuned on dev",
         lambda: make(base_store, base_profile, "hybrid", k=100, **best_fusion(BASE, "best_rrf"))),
        ("hybrid", "hybrid, profile defaults (convex fusion chosen on dev)",
         lambda: make(base_store, base_profile, "hybrid", k=100)),
    ]
    if args.int8:
        i_store, i_profile = scifact_store(BASE, "onnx-int8")
        configs += [
            ("dense-int8", "dense MiniLM, int8 ONNX encoder (the default backend here)",
             lambda: make(i_store, i_profile, "dense", k=100)),
            ("hybrid-int8", "hybrid, profile defaults, int8 encoder: the default configuration",
             lambda: make(i_store, i_profile, "hybrid", k=100)),
        ]
    if have_tuned:
        t_store, t_profile = scifact_store(tuned_enc)
        t_fusion = best_fusion(tuned_enc)
        configs += [
            (f"dense-ft{args.ft_suffix}", f"dense, {tuned_enc} (MiniLM fine-tuned on train split)",
             lambda: make(t_store, t_profile, "dense", k=100)),
            (f"hybrid-ft{args.ft_suffix}", f"hybrid, {tuned_enc} (fusion chosen on dev)",
             lambda: make(t_store, t_profile, "hybrid", k=100, **t_fusion)),
        ]
        if args.int8 and load(tune_name(tuned_enc, "onnx-int8")):
            ti_store, ti_profile = scifact_store(tuned_enc, "onnx-int8")
            ti_fusion = best_fusion(tuned_enc, backend="onnx-int8")
            configs += [
                (f"dense-ft{args.ft_suffix}-int8", f"dense, {tuned_enc}, int8 ONNX encoder",
                 lambda: make(ti_store, ti_profile, "dense", k=100)),
                (f"hybrid-ft{args.ft_suffix}-int8",
                 f"hybrid, {tuned_enc}, int8 ONNX encoder (fusion chosen on dev)",
                 lambda: make(ti_store, ti_profile, "hybrid", k=100, **ti_fusion)),
            ]
    rerank_rows = []
    if args.reranker:
        ce = CachedReranker(args.reranker)
        sweep = load(f"rerank-sweep-{BASE}-{args.reranker}")
        n = sweep["best_n"] if sweep and sweep["best_n"] else 20
        blend = sweep.get("best_blend", 0.0) if sweep else 0.0
        rerank_rows.append(("rerank", f"hybrid defaults + cross-encoder trained here (top {n}, "
                            f"blend {blend})",
                            lambda: reranked(base_store, base_profile, ce, n, blend=blend),
                            "hybrid"))
        if have_tuned:
            sweep_t = load(f"rerank-sweep-{tuned_enc}-{args.reranker}")
            n_t = sweep_t["best_n"] if sweep_t and sweep_t["best_n"] else n
            blend_t = sweep_t.get("best_blend", 0.0) if sweep_t else blend
            rerank_rows.append(("rerank-ft", f"hybrid fine-tuned + cross-encoder (top {n_t}, "
                                f"blend {blend_t})",
                                lambda: reranked(t_store, t_profile, ce, n_t, blend=blend_t,
                                                 **t_fusion), "hybrid-ft"))
    if args.only:
        configs = [c for c in configs if c[0] in args.only]
        rerank_rows = [c for c in rerank_rows if c[0] in args.only]
    results = load("quality") or {}
    for split in args.splits:
        qids = sorted(sp[split])
        for key, label, build in configs:
            times: list[float] = []
            results[f"{split}/{key}"] = {"label": label,
                                         **measured(build(), queries, qids, sp[split], times),
                                         "ms_per_query": round(1000 * statistics.mean(times), 1)}
            log(split, key, results[f"{split}/{key}"])
        for key, label, build, first in rerank_rows:
            times = []
            run = run_of(build(), queries, qids, 10, times)
            ce.flush()
            row = {"label": label, **score(run, sp[split], ["ndcg@10", "mrr@10"]),
                   # Reranking permutes the first stage's top N inside its top 100, so recall@100
                   # is the first stage's.
                   "recall@100": results[f"{split}/{first}"]["recall@100"],
                   "ms_per_query": round(1000 * statistics.mean(times), 1)}
            results[f"{split}/{key}"] = row
            log(split, key, row)
        save("quality", results)


def cmd_multiquery(args: argparse.Namespace) -> None:
    """Query transformation (multi-query expansion with the packaged chat model) on one split:
    the hybrid with and without it on the same queries; writes out/results/multiquery-*.json."""
    from appkit.models import make_chat_model
    from retrievers.registry import build_pipeline

    sp = splits()
    queries = load_queries()
    store, profile = scifact_store(args.model, args.backend)
    fusion = (best_fusion(args.model, backend=args.backend)
              if load(tune_name(args.model, args.backend)) else {})
    qids = sorted(sp[args.split])[: args.limit or None]
    llm = make_chat_model(Profile())  # the packaged chat model, loaded once
    rows = {}
    for key, expand in (("hybrid", False), ("hybrid+multi-query", True)):
        cfg = dataclasses.replace(RetrieversConfig(), query_expansion=expand,
                                  expansion_queries=args.n_queries, **fusion)
        p = dataclasses.replace(profile, retrieval=RetrievalConfig(k=10), retrievers=cfg)
        retriever = build_pipeline(RetrieverContext(p, store, lambda: llm), "hybrid")
        times: list[float] = []
        run = run_of(retriever, queries, qids, 10, times)
        rows[key] = {**score(run, sp[args.split], ["ndcg@10", "mrr@10"]),
                     "ms_per_query": round(1000 * statistics.mean(times), 1)}
        log(args.split, key, rows[key])
    save(f"multiquery-{args.model}-{args.backend}-{args.split}", {
        "model": args.model, "backend": args.backend, "split": args.split, "queries": len(qids),
        "n_queries": args.n_queries, "fusion": fusion, "rows": rows})


def percentiles(times: list[float]) -> dict[str, float]:
    ms = np.asarray(times) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 1),
            "p95_ms": round(float(np.percentile(ms, 95)), 1), "n": len(times)}


def synthetic_store(n: int, backend: str = "torch") -> tuple[Any, Profile]:
    """``n`` synthetic chunks: sentences of SciFact abstracts reshuffled into ~1,000-character
    chunks, each with the vector of the abstract it mostly came from plus noise (cosine about 0.9
    to it), so the store has the cluster structure of real embeddings without embedding 100k
    texts on this CPU (about 75 minutes)."""
    from appkit.ingest.manifest import Manifest
    from appkit.store.chroma import ChromaStore

    path = model_dir(BASE)
    data_dir = OUT / "stores" / f"synthetic-{n}"
    profile = Profile(store=StoreConfig(path=str(data_dir), collection="synthetic"))
    store = ChromaStore(profile.store, data_dir,
                        CachedQueryEmbeddings(path, memo=False, backend=backend))
    store.embeddings.identity = model_key(path)  # the vectors are synthetic: any encoder queries them
    if store.count() == n:
        return store, profile
    rng = np.random.default_rng(SEED)
    ids, texts = load_corpus()
    vecs = corpus_embeddings(path)
    sentences = [[s for s in t.split(". ") if s] for t in texts]
    t0 = time.perf_counter()
    step = 5000
    for start in range(store.count() // step * step, n, step):
        m = min(step, n - start)
        src = rng.integers(0, len(texts), m)
        chunk_texts = []
        for j in src:
            own = sentences[j][: int(rng.integers(2, 6))]
            other = sentences[int(rng.integers(0, len(texts)))][:2]
            chunk_texts.append(". ".join(own + other)[:1000])
        noise = rng.normal(0, 1, (m, vecs.shape[1])).astype(np.float32)
        noise /= np.linalg.norm(noise, axis=1, keepdims=True)
        v = vecs[src] + 0.48 * noise
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        store.upsert([f"s{start + i}" for i in range(m)], chunk_texts,
                     [{"source": f"synthetic/{int(j)}.txt", "file_type": "txt", "chunk_index": 0}
                      for j in src], v)
    Manifest(data_dir / "manifest.sqlite").bump_generation()
    log(f"built synthetic store of {n} chunks in {time.perf_counter() - t0:.0f}s")
    return store, profile


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cmd_latency(args: argparse.Namespace) -> None:
    """p50/p95 per query (query embedding included) at 5k (SciFact) and 100k (synthetic) chunks."""
    import gc

    from retrievers.bm25 import index_for

    queries = load_queries()
    qids = sorted(load_qrels("test"))[: args.queries]
    results = load("latency") or {}
    encode(model_dir(BASE), ["warm up"], args.backend)
    for size in args.sizes:
        if size == 5183:
            store, profile = scifact_store(BASE, args.backend)
            store.embeddings.memo = False
        else:
            store, profile = synthetic_store(size, args.backend)
        gc.collect()
        before = rss_mb()
        index = index_for(store, profile.data_dir)
        t0 = time.perf_counter()
        index.rebuild()
        build_s = time.perf_counter() - t0
        results[f"{size}/bm25_index"] = {
            "chunks": len(index), "build_s": round(build_s, 1),
            "arrays_mb": round(index.memory_bytes() / 2**20, 1),
            "disk_mb": round(sum(f.stat().st_size for f in index.path.rglob("*")) / 2**20, 1),
            "rss_growth_mb": round(rss_mb() - before, 1)}
        log(size, results[f"{size}/bm25_index"])
        fusion: dict[str, Any] = {}  # the profile defaults
        retrievers = {"dense": make(store, profile, "dense", k=10),
                      "bm25": make(store, profile, "bm25", k=10),
                      "hybrid": make(store, profile, "hybrid", k=10, **fusion)}
        if args.reranker:
            from retrievers.rerank import CrossEncoderReranker

            ce = CrossEncoderReranker(args.reranker)
            ce.score("warm up", ["warm up"])
            for n in args.rerank_n:
                retrievers[f"rerank-{n}"] = reranked(store, profile, ce, n, **fusion)
        # The query embedding is timed apart from the rest: on a shared, oversubscribed CPU torch's
        # threads stall and it dominates; the rest (Chroma, BM25, fusion, fetching) is what the
        # retrievers themselves cost. "total" adds the two per query.
        emb = store.embeddings
        embed_times = []
        for q in qids:
            t0 = time.perf_counter()
            vec = emb.encode_one(queries[q])
            embed_times.append(time.perf_counter() - t0)
            emb._memo[queries[q]] = vec
        emb.memo = True
        results[f"{size}/query-embedding"] = percentiles(embed_times)
        log(size, "query-embedding", results[f"{size}/query-embedding"])
        for name, r in retrievers.items():
            r.invoke(queries[qids[0]])  # warm: loads, first Chroma query
            times: list[float] = []
            totals: list[float] = []
            few = qids[: args.rerank_queries] if name.startswith("rerank") else qids
            for i, q in enumerate(few):
                t0 = time.perf_counter()
                r.invoke(queries[q])
                times.append(time.perf_counter() - t0)
                totals.append(times[-1] + (embed_times[i] if name != "bm25" else 0.0))
            results[f"{size}/{name}"] = {**percentiles(times),
                                         "total_p50_ms": percentiles(totals)["p50_ms"],
                                         "total_p95_ms": percentiles(totals)["p95_ms"],
                                         "load_avg": round(os.getloadavg()[0], 1)}
            log(size, name, results[f"{size}/{name}"])
        save("latency", results)


def cmd_report(args: argparse.Namespace) -> None:
    """Markdown tables from out/results/*.json (pasted into RESULTS_retrievers.md)."""
    q = load("quality") or {}
    print("| retriever | setting | dev nDCG@10 | test nDCG@10 | test MRR@10 | test Recall@100 |")
    print("| --- | --- | --- | --- | --- | --- |")
    keys = dict.fromkeys(k.split("/", 1)[1] for k in q)
    for key in keys:
        dev, test = q.get(f"dev/{key}", {}), q.get(f"test/{key}", {})
        label = (test or dev).get("label", "")
        print(f"| `{key}` | {label} | {dev.get('ndcg@10', '—')} | **{test.get('ndcg@10', '—')}** | "
              f"{test.get('mrr@10', '—')} | {test.get('recall@100', '—')} |")
    lat = load("latency") or {}
    if lat:
        print("\n| chunks | retriever | p50 ms (retrieval) | p95 ms (retrieval) | p50 ms (total) "
              "| p95 ms (total) | queries | load avg |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for key, row in lat.items():
            size, name = key.split("/", 1)
            if "p50_ms" in row:
                print(f"| {size} | {name} | {row['p50_ms']} | {row['p95_ms']} | "
                      f"{row.get('total_p50_ms', '')} | {row.get('total_p95_ms', '')} | {row['n']} | "
                      f"{row.get('load_avg', '')} |")
        print("\n| chunks | BM25 build s | index arrays MB | on disk MB | RSS growth MB |")
        print("| --- | --- | --- | --- | --- |")
        for key, row in lat.items():
            if key.endswith("/bm25_index"):
                print(f"| {row['chunks']} | {row['build_s']} | {row['arrays_mb']} | "
                      f"{row['disk_mb']} | {row['rss_growth_mb']} |")
    for name in sorted((OUT / "results").glob("rerank-sweep-*.json")):
        sweep = json.loads(name.read_text())
        print(f"\n{name.stem}: " + ", ".join(f"N={r['n']}: {r['ndcg@10']}" for r in sweep["rows"])
              + f" -> N={sweep['best_n']}")


def cmd_train(args: argparse.Namespace) -> None:
    """Pairs from the train split (negatives mined with the dev-tuned hybrid), then the CLI trains."""
    import subprocess

    from retrievers.train import pairs_from_qrels, write_pairs

    sp = splits()
    queries = load_queries()
    pairs_file = OUT / "pairs" / "scifact-train.jsonl"
    if not pairs_file.exists():
        store, profile = scifact_store(BASE)
        hybrid = make(store, profile, "hybrid", k=30, **best_fusion(BASE))
        ranked = {q: [d.metadata["source"] for d in hybrid.invoke(queries[q], k=30)]
                  for q in sorted(sp["train"])}
        pairs = pairs_from_qrels(sp["train"], DATA / "queries.jsonl", DATA / "corpus.jsonl",
                                 negatives=3, ranked=ranked, skip_top=2, seed=SEED)
        write_pairs(pairs, pairs_file)
        log(f"wrote {len(pairs)} pairs to {pairs_file}")
    cmd = [sys.executable, "-m", "appkit.cli", "retrievers", "train", "--pairs", str(pairs_file),
           "--name", args.name, "--what", args.what, "--epochs", str(args.epochs),
           "--reranker-epochs", str(args.reranker_epochs), "--negatives", str(args.negatives),
           "--max-length", str(args.max_length), "--max-pairs", str(args.max_pairs),
           "--reranker-lr", str(args.reranker_lr)]
    log("$ APPKIT_CACHE=benchmarks/out/cache appkit " + " ".join(cmd[3:]))
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    save(f"train-{args.name}-{args.what}", {"command": "appkit " + " ".join(cmd[3:]),
                                "seconds": round(time.perf_counter() - t0)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("tune")
    p.add_argument("--model", default=BASE)
    p.add_argument("--quick", action="store_true", help="a smaller grid (8 settings)")
    p.add_argument("--backend", default="torch", choices=["torch", "onnx-int8"])
    p.set_defaults(func=cmd_tune)
    p = sub.add_parser("rerank-sweep")
    p.add_argument("--model", default=BASE)
    p.add_argument("--reranker", default="scifact-reranker")
    p.add_argument("--n", type=int, nargs="+", default=[10, 20, 30])
    p.add_argument("--blend", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0])
    p.set_defaults(func=cmd_rerank_sweep)
    p = sub.add_parser("quality")
    p.add_argument("--splits", nargs="+", default=["dev", "test"])
    p.add_argument("--encoder", default="scifact-encoder", help="fine-tuned encoder ('' = none)")
    p.add_argument("--reranker", default="scifact-reranker", help="cross-encoder ('' = none)")
    p.add_argument("--only", nargs="+", help="only these rows (others are kept from earlier runs)")
    p.add_argument("--ft-suffix", default="", help="row-key suffix for this fine-tuned encoder")
    p.add_argument("--int8", action="store_true",
                   help="also the default configuration's int8 ONNX encoder (rows *-int8)")
    p.set_defaults(func=cmd_quality)
    p = sub.add_parser("multiquery")
    p.add_argument("--model", default=BASE)
    p.add_argument("--split", default="dev", choices=["dev", "test"])
    p.add_argument("--limit", type=int, default=0, help="the first N queries of the split")
    p.add_argument("--n-queries", type=int, default=3)
    p.add_argument("--backend", default="torch", choices=["torch", "onnx-int8"])
    p.set_defaults(func=cmd_multiquery)
    p = sub.add_parser("latency")
    p.add_argument("--sizes", type=int, nargs="+", default=[5183, 100_000])
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--reranker", default="", help="also time reranking with this cross-encoder")
    p.add_argument("--rerank-n", type=int, nargs="+", default=[10, 20, 30])
    p.add_argument("--rerank-queries", type=int, default=30)
    p.add_argument("--backend", default="onnx-int8", choices=["torch", "onnx-int8"],
                   help="query encoder (the default configuration uses onnx-int8 on this CPU)")
    p.set_defaults(func=cmd_latency)
    p = sub.add_parser("report")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("train")
    p.add_argument("--what", default="both", choices=["both", "encoder", "reranker"])
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--reranker-epochs", type=float, default=1.0)
    p.add_argument("--negatives", type=int, default=3)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--max-pairs", type=int, default=0)
    p.add_argument("--name", default="scifact", help="name prefix of the trained models")
    p.add_argument("--reranker-lr", type=float, default=3e-5)
    p.set_defaults(func=cmd_train)
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
