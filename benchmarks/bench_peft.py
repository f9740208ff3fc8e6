"""The PEFT table (issue 11): LoRA vs IA3 vs prompt tuning vs prefix tuning on SQuAD, same budget.

Each method trains Gemma 3 270M (``--base``) on the SQuAD training articles of
``bench_finetune_squad.py`` (its ``data`` stage: split by article, seed 0) for the same number of
steps, batch and token limit, each in its own process, whose peak RSS (``ru_maxrss``) is the
method's peak memory. Then every tuned model and the untuned base answer the same held-out
questions through the app's prompt and :class:`~appkit.models.transformers_chat.TransformersChatModel`
(float32 base + adapter, greedy; soft prompts cannot go through llama.cpp, so all rows use the
same backend), scored with SQuAD token F1 and exact match.

Columns: trainable parameters (``finetune.plan.trainable_params``, equal to peft's count), peak
memory, median seconds per step, F1, EM. Results: ``benchmarks/out/peft/results.json``.

Run (the data stage once, then the table):
``.venv/bin/python benchmarks/bench_finetune_squad.py --stages data``
``.venv/bin/python benchmarks/bench_peft.py --steps 60 --questions 100 --threads 2``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
OUT = REPO / "benchmarks" / "out" / "peft"
RESULTS = OUT / "results.json"
METHODS = ("lora", "ia3", "prompt-tuning", "prefix-tuning")


def save(data: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(data, indent=2))


def train_one(args: argparse.Namespace) -> None:
    """In a child process: train one method and print its numbers as JSON."""
    import bench_finetune_squad as squad

    from finetune.peft_methods import DEFAULT_LR
    from finetune.runs import Run, runs_dir
    from finetune.trainer import TrainConfig, train

    method = args.one
    name = f"bench-peft-{args.base}-{method}"
    if not (runs_dir() / name).exists():
        cfg = TrainConfig(base=args.base, data=str(squad.work_dir() / "train.jsonl"),
                          method=method, lr=DEFAULT_LR[method], batch_size=args.batch_size,
                          max_steps=args.steps, max_tokens=args.max_tokens, save_every=1000,
                          warmup=0.05, threads=args.threads,
                          virtual_tokens=args.virtual_tokens, prompt=squad.prompt_config())
        train(cfg, name=name, progress=False)
    run = Run.open(name)
    hist = run.history()
    print(json.dumps({"run": name, "steps": run.info.get("step"),
                      "step_s": statistics.median(h["step_s"] for h in hist[1:] or hist),
                      "first_loss": hist[0]["loss"], "last_loss": hist[-1]["loss"],
                      "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "hf_dir": run.info.get("hf_dir"), "final": str(run.final_dir)}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--base", default="gemma3-270m")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--max-tokens", type=int, default=320)
    p.add_argument("--virtual-tokens", type=int, default=20)
    p.add_argument("--questions", type=int, default=100)
    p.add_argument("--max-answer", type=int, default=24)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        train_one(args)
        return
    import bench_finetune_squad as squad

    from appkit.models.catalogue import get_spec
    from appkit.models.transformers_chat import TransformersChatModel
    from finetune.check import score_rows
    from finetune.data import read_rows
    from finetune.plan import resolve_shape, trainable_params

    if not (squad.work_dir() / "heldout.jsonl").exists():
        raise SystemExit("run: .venv/bin/python benchmarks/bench_finetune_squad.py --stages data")
    data = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    shape = resolve_shape(args.base)
    rows = read_rows(squad.work_dir() / "heldout.jsonl")[0][:args.questions]
    chat = get_spec(args.base).role == "chat"
    hf_dir = ""
    for method in args.methods.split(","):
        if method in data and data[method].get("n") == len(rows):
            hf_dir = data[method]["hf_dir"]
            continue
        argv = [sys.executable, __file__, "--one", method, *sys.argv[1:]]
        proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO,
                              env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
        if proc.returncode != 0:
            raise SystemExit(f"{method} failed:\n{proc.stderr[-3000:]}")
        trained = json.loads(proc.stdout.strip().splitlines()[-1])
        hf_dir = trained["hf_dir"]
        model = TransformersChatModel(model_path=hf_dir, adapter_path=trained["final"],
                                      chat_template=chat, max_tokens=args.max_answer,
                                      temperature=0.0)
        scores = score_rows(model, rows, prompt=squad.prompt_config(), desc=method)
        data[method] = {**trained, **scores.summary(), "n": len(rows),
                        "trainable": trainable_params(shape, method,
                                                      virtual_tokens=args.virtual_tokens),
                        "load_average": os.getloadavg()[0]}
        save(data)
        print(json.dumps(data[method])[:400], flush=True)
    if "base" not in data and hf_dir:
        model = TransformersChatModel(model_path=hf_dir, chat_template=chat,
                                      max_tokens=args.max_answer, temperature=0.0)
        data["base"] = {**score_rows(model, rows, prompt=squad.prompt_config(),
                                     desc="base").summary(), "n": len(rows)}
        save(data)
    print(f"\n{'method':<15} {'trainable':>10} {'peak MB':>8} {'s/step':>7} {'F1':>6} {'EM':>6}")
    for key, r in data.items():
        print(f"{key:<15} {r.get('trainable', 0):>10} "
              f"{r.get('peak_rss_bytes', 0) / 2**20:>8.0f} {r.get('step_s', 0):>7.2f} "
              f"{r.get('token_f1', 0):>6.1f} {r.get('exact_match', 0):>6.1f}")


if __name__ == "__main__":
    main()
