"""SQuAD v1.1 dev through the default app: retrieval hit@5 / MRR, answer EM / token F1, and ragas
faithfulness with the local judge on a subset, with wall time per case.

Corpus: every paragraph of ``../shared/bench/squad/dev-v1.1.json`` (2,067), one text file per
paragraph written under ``benchmarks/out/squad_eval/corpus/<title>/p007.txt`` and ingested with the
default profile (MiniLM embeddings, Chroma, chunk_size 1000) into ``benchmarks/out/squad_eval/``;
the data file is read from ``../shared``, never copied into the repository. Questions: 200 drawn
with seed 0. The gold paragraph is known, so retrieval metrics are exact. The app is the default
profile except ``retrieval.k = 5`` (so hit@5 is measurable; the default is 4).

Everything is cached under ``benchmarks/out/`` (ingestion is incremental, answers and judge calls
are cached by input hash), so a re-run only computes what changed.

Usage:
    .venv/bin/python benchmarks/bench_squad_eval.py                  # 200 questions, 20 judged
    .venv/bin/python benchmarks/bench_squad_eval.py --questions 20 --faithfulness 5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SQUAD = REPO.parent / "shared" / "bench" / "squad" / "dev-v1.1.json"
OUT = REPO / "benchmarks" / "out" / "squad_eval"

os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ANSWER_METRICS = ["exact_match", "token_f1", "rougeL", "bleu", "chrf", "has_citation",
                  "citation_correctness", "hit_rate@5", "mrr", "ndcg@5", "recall@5"]


def write_corpus(folder: Path) -> int:
    from eval.testset import iter_squad, squad_paragraph_id

    seen = set()
    for title, index, context, _ in iter_squad(SQUAD):
        key = squad_paragraph_id(title, index)
        if key in seen:
            continue
        seen.add(key)
        path = folder / f"{key}.txt"
        if not path.exists() or path.read_text(encoding="utf-8") != context:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(context, encoding="utf-8")
    return len(seen)


def retrieval_only(app, cases) -> dict:  # noqa: ANN001
    """hit@5, MRR, nDCG@5, Recall@5 of the app's retriever on every case (no chat model)."""
    from eval.metrics import Retrieved, Sample, make_metrics

    start = time.perf_counter()
    samples = []
    for case in cases:
        docs = app.retriever.invoke(case.question)
        samples.append(Sample(case.question, "", relevant_ids=case.relevant_ids, retrieved=tuple(
            Retrieved(str(d.id), str(d.metadata.get("source", "")),
                      float(d.metadata.get("relevance", 0.0))) for d in docs)))
    seconds = time.perf_counter() - start
    out = {"questions": len(cases), "seconds": round(seconds, 1)}
    for m in make_metrics(["hit_rate@5", "mrr", "ndcg@5", "recall@5", "hit_rate@1"]):
        scores = [s.value for s in m.score_many(samples)]
        out[m.name] = round(sum(scores) / len(scores), 4)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--questions", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--retriever", help="retrieval.retriever (default: the profile default)")
    ap.add_argument("--answer-limit", type=int, default=None,
                    help="answer only the first N sampled questions (retrieval is measured on "
                         "all of them); for a loaded machine")
    ap.add_argument("--faithfulness", type=int, default=20,
                    help="cases (the first N of the sample) scored with ragas faithfulness")
    ap.add_argument("--retrieval-only", action="store_true",
                    help="only the retrieval pass over all sampled questions (no chat model)")
    ap.add_argument("--no-retrieval", action="store_true",
                    help="skip the retrieval-only pass over all sampled questions")
    ap.add_argument("--judge-timeout", type=float, default=180.0,
                    help="seconds one judge call may take (raise it on a loaded machine)")
    ap.add_argument("--judge", help="judge model (default: the best installed)")
    ap.add_argument("--judge-check-limit", type=int, default=None,
                    help="hand-labelled cases per label for the judge check (default: all)")
    args = ap.parse_args()

    from appkit.app import App
    from appkit.config import Profile, RetrievalConfig, StoreConfig
    from eval.judge import Judge
    from eval.judge_check import check_judge
    from eval.runner import EvalRunner
    from eval.testset import from_squad, save_testset

    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    n_paragraphs = write_corpus(OUT / "corpus")
    profile = Profile(store=StoreConfig(path=str(OUT / "store")),
                      retrieval=dataclasses.replace(
                          RetrievalConfig(), k=5,
                          retriever=args.retriever or RetrievalConfig().retriever))
    app = App(profile)
    print(f"corpus: {n_paragraphs} paragraphs; ingesting (incremental)…", file=sys.stderr)
    ingest = app.ingest([str(OUT / "corpus")])
    chunks = app.store.count()
    print(f"ingested in {ingest.seconds:.0f}s: {ingest.chunks_embedded} chunks embedded, "
          f"{chunks} in the store", file=sys.stderr)

    cases = from_squad(SQUAD, sample=args.questions, seed=args.seed)
    save_testset(cases, OUT / "testset.jsonl")
    retrieval = None if args.no_retrieval else retrieval_only(app, cases)
    if retrieval is not None:
        (OUT / "retrieval.json").write_text(json.dumps(retrieval, indent=2), encoding="utf-8")
    if args.retrieval_only:
        print(json.dumps(retrieval, indent=2))
        return 0
    if retrieval is None and (OUT / "retrieval.json").exists():
        retrieval = json.loads((OUT / "retrieval.json").read_text(encoding="utf-8"))
    answered = cases[: args.answer_limit] if args.answer_limit else cases
    runner = EvalRunner(app, metrics=ANSWER_METRICS, progress=True)
    result = runner.run(answered, OUT / "run-answers", testset_path=str(OUT / "testset.jsonl"))
    answers = result.summary

    judged = None
    agreement = None
    if args.faithfulness:
        cache = profile.data_dir / "eval-cache" / "judge"
        with Judge(args.judge, cache_dir=cache, timeout=args.judge_timeout) as judge:
            sub = EvalRunner(app, metrics=["faithfulness"], judge=judge, judge_check=False,
                             progress=True)
            judged = sub.run(cases[: args.faithfulness], OUT / "run-faithfulness",
                             testset_path=str(OUT / "testset.jsonl")).summary
            agreement = check_judge(judge, cache_dir=cache, limit=args.judge_check_limit,
                                    progress=True).to_dict()
            judge_name, caveat = judge.name, judge.caveat
    walls = [c["wall_s"] for c in result.cases]
    gen_walls = [c["wall_s"] for c in result.cases if not c["cached"]]
    report = {
        "command": "benchmarks/bench_squad_eval.py " + " ".join(sys.argv[1:]),
        "questions": len(cases), "seed": args.seed, "paragraphs": n_paragraphs,
        "chunks": chunks, "ingest_s": round(ingest.seconds, 1),
        "chat_model": answers["app"]["chat_model"],
        "retrieval_all_questions": retrieval,
        "answered": len(answered),
        "metrics": {k: v["mean"] for k, v in answers["metrics"].items()},
        "scored": {k: v["scored"] for k, v in answers["metrics"].items()},
        "wall_s_per_case_mean": round(sum(walls) / len(walls), 2),
        "wall_s_per_case_p50": sorted(walls)[len(walls) // 2],
        "answered_now": len(gen_walls),
        "faithfulness": None if judged is None else {
            "judge": judge_name, "caveat": caveat, "cases": args.faithfulness,
            "mean": judged["metrics"]["faithfulness"]["mean"],
            "scored": judged["metrics"]["faithfulness"]["scored"],
            "failed": judged["metrics"]["faithfulness"]["failed"],
            "failures": judged["metrics"]["faithfulness"]["failures"],
            "judge_s_total": judged["timing"]["total_s"],
            "agreement": {k: agreement[k] for k in ("tpr", "tnr", "positives", "negatives",
                                                    "failed")} if agreement else None,
        },
        "total_s": round(time.perf_counter() - t0, 1),
    }
    (OUT / "results.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
