"""The int8 ONNX encoder vs torch fp32 on SciFact: nDCG@10 / MRR@10 / Recall@100 and passages/s.

Both encoders are the packaged all-MiniLM-L6-v2 as appkit runs it (``embedding.backend = "torch"``:
sentence-transformers fp32; ``"onnx-int8"``: appkit's int8 export), batch 16, max 256 tokens, over
the 5,183 SciFact abstracts (title + text) and the 300 test queries, with exact cosine search (no
HNSW approximation, so the two rows differ only by the encoder), scored with ranx. Both encoders
run in this process, one after the other, so the speed ratio is measured under the same load.

Usage:
    .venv/bin/python benchmarks/bench_int8_scifact.py [--limit N]   # N passages for a quick look
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_scifact as sf  # noqa: E402  (data loaders; sets the benchmark-only model cache)


def evaluate(doc_ids: list[str], docs: np.ndarray, queries: dict[str, np.ndarray],
             qrels: dict[str, dict[str, int]]) -> dict[str, float]:
    from ranx import Qrels, Run, evaluate as ranx_evaluate

    run = {}
    for qid, q in queries.items():
        scores = docs @ q
        top = np.argsort(-scores)[:100]
        run[qid] = {doc_ids[i]: float(scores[i]) for i in top}
    qrels = {q: r for q, r in qrels.items() if q in run}
    values = ranx_evaluate(Qrels(qrels), Run(run), sf.METRICS)
    return {k: round(float(v), 4) for k, v in values.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--limit", type=int, default=0, help="passages to embed (0: all 5,183)")
    args = ap.parse_args()

    from appkit.models.onnx_int8 import OnnxInt8Embeddings
    from appkit.models.sentence_transformers import SentenceTransformerEmbeddings

    doc_ids, texts = sf.load_corpus()
    if args.limit:
        doc_ids, texts = doc_ids[: args.limit], texts[: args.limit]
    qrels = sf.load_qrels("test")
    all_queries = sf.load_queries()
    qids = sorted(qrels)
    path = sf.model_dir(sf.BASE)
    encoders = {
        "torch fp32": SentenceTransformerEmbeddings(path, name=sf.BASE, batch_size=16,
                                                    max_seq_length=256),
        "onnx int8": OnnxInt8Embeddings(path, name=sf.BASE, batch_size=16),
    }
    rows = {}
    for name, enc in encoders.items():
        enc.embed_query("warm up")  # loads (and for int8, exports once) outside the timing
        t0 = time.perf_counter()
        docs = np.asarray(enc.embed_documents(texts), dtype=np.float32)
        seconds = time.perf_counter() - t0
        t1 = time.perf_counter()
        queries = {q: np.asarray(enc.embed_query(all_queries[q]), dtype=np.float32) for q in qids}
        q_seconds = time.perf_counter() - t1
        rows[name] = {"passages_per_s": round(len(texts) / seconds, 1),
                      "queries_per_s": round(len(qids) / q_seconds, 1),
                      **evaluate(doc_ids, docs, queries, qrels)}
        sf.log(name, rows[name])
    fp32, int8 = rows["torch fp32"], rows["onnx int8"]
    report = {
        "command": "benchmarks/bench_int8_scifact.py " + " ".join(sys.argv[1:]),
        "passages": len(texts), "queries": len(qids), "rows": rows,
        "speed_ratio_int8_vs_fp32": round(int8["passages_per_s"] / fp32["passages_per_s"], 3),
        "ndcg@10_delta_int8_minus_fp32": round(int8["ndcg@10"] - fp32["ndcg@10"], 4),
    }
    out = sf.OUT / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "int8-vs-fp32.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
