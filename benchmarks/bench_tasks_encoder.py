"""Encoder-only classify: fine-tune the packaged MiniLM with a classification head on
benchmarks/tasks/classify_train.jsonl, then score it on classify_eval.jsonl (accuracy, macro-F1,
examples per second). The prompted decoders are scored on the same file by
``appkit models compare`` (benchmarks/tasks/run_all.sh).

Usage: .venv/bin/python benchmarks/bench_tasks_encoder.py [--out benchmarks/out/minilm-classify]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from appkit.tasks.encoder import EncoderClassifier
from eval.tasks import load_eval_set, score_task

HERE = Path(__file__).parent / "tasks"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(HERE.parent / "out" / "minilm-classify"))
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    train = load_eval_set(HERE / "classify_train.jsonl")
    test = load_eval_set(HERE / "classify_eval.jsonl")
    labels = sorted({r["reference"] for r in train})
    clf = EncoderClassifier("all-minilm-l6-v2", labels=labels)
    fit = clf.fit([r["input"] for r in train], [r["reference"] for r in train],
                  epochs=args.epochs)
    clf.save(args.out)
    texts = [r["input"] for r in test]
    clf.predict(texts[:2])  # warm
    one_by_one = time.perf_counter()
    preds = [clf.predict([t])[0] for t in texts]
    per_example = (time.perf_counter() - one_by_one) / len(texts)
    batched = time.perf_counter()
    clf.predict(texts)
    batched = (time.perf_counter() - batched) / len(texts)
    scores = score_task("classify", preds, [r["reference"] for r in test])
    print(json.dumps({"model": "all-minilm-l6-v2 + head (fine-tuned)", **scores,
                      "s_per_example": round(per_example, 4),
                      "examples_per_s": round(1 / per_example, 1),
                      "examples_per_s_batched": round(1 / batched, 1),
                      "train_seconds": round(fit["seconds"], 1), "train_examples": len(train),
                      "epochs": args.epochs, "saved": args.out}, indent=2))


if __name__ == "__main__":
    main()
