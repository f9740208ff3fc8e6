"""Encoder-only tasks: fine-tune the packaged MiniLM with a head, then score it on the task's eval
set (metrics, examples per second).

- ``--task classify`` (default): a classification head on benchmarks/tasks/classify_train.jsonl,
  scored on classify_eval.jsonl (accuracy, macro-F1).
- ``--task extract``: a token-classification head (BIO tags) on extract_train.jsonl, scored on
  extract_eval.jsonl (entity-level precision, recall, F1).

The prompted decoders are scored on the same files by ``appkit models compare``
(benchmarks/tasks/run_all.sh).

Usage: .venv/bin/python benchmarks/bench_tasks_encoder.py [--task extract] [--out FOLDER]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from appkit.tasks.encoder import EncoderClassifier
from appkit.tasks.encoder_tokens import EncoderTokenClassifier, load_entity_examples
from eval.tasks import load_eval_set, score_task

HERE = Path(__file__).parent / "tasks"


def train(task: str, epochs: int) -> tuple[object, dict]:
    if task == "classify":
        rows = load_eval_set(HERE / "classify_train.jsonl")
        labels = sorted({r["reference"] for r in rows})
        model = EncoderClassifier("all-minilm-l6-v2", labels=labels)
        fit = model.fit([r["input"] for r in rows], [r["reference"] for r in rows], epochs=epochs)
    else:
        examples = load_entity_examples(HERE / "extract_train.jsonl")
        labels = sorted({s[2] for _, spans in examples for s in spans})
        model = EncoderTokenClassifier("all-minilm-l6-v2", labels=labels)
        fit = model.fit([t for t, _ in examples], [s for _, s in examples], epochs=epochs)
    return model, {**fit, "train_examples": len(rows if task == "classify" else examples)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=["classify", "extract"], default="classify")
    ap.add_argument("--out", help="where the tuned model is saved "
                    "(default: benchmarks/out/minilm-<task>)")
    ap.add_argument("--epochs", type=int, default=None,
                    help="default: 10 for classify, 20 for extract")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    out = args.out or str(HERE.parent / "out" / f"minilm-{args.task}")
    epochs = args.epochs or (10 if args.task == "classify" else 20)
    model, fit = train(args.task, epochs)
    model.save(out)
    test = load_eval_set(HERE / f"{args.task}_eval.jsonl")
    texts = [r["input"] for r in test]
    model.predict(texts[:2])  # warm
    one_by_one = time.perf_counter()
    preds = [model.predict([t])[0] for t in texts]
    per_example = (time.perf_counter() - one_by_one) / len(texts)
    batched = time.perf_counter()
    model.predict(texts)
    batched = (time.perf_counter() - batched) / len(texts)
    scores = score_task(args.task, preds, [r["reference"] for r in test])
    print(json.dumps({"model": f"all-minilm-l6-v2 + {model.role} head (fine-tuned)", **scores,
                      "s_per_example": round(per_example, 4),
                      "examples_per_s": round(1 / per_example, 1),
                      "examples_per_s_batched": round(1 / batched, 1),
                      "train_seconds": round(fit["seconds"], 1),
                      "train_examples": fit["train_examples"], "epochs": epochs,
                      "saved": out}, indent=2))


if __name__ == "__main__":
    main()
