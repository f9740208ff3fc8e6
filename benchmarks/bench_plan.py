"""``appkit plan`` against reality: predicted vs measured peak memory and step time (issue 11).

For each base model and method, two separate processes (so neither's memory counts in the other):

1. ``appkit plan BASE --seq-len S --batch-size B --method M --json``: the predicted training memory
   of M and the micro-benchmark's seconds per step of M;
2. ``appkit finetune M --base BASE --data rows.jsonl --max-steps N --max-tokens S --batch-size B``
   on rows long enough that every example is cut to exactly S tokens: the median ``step_s`` of
   the run's ``log.jsonl`` after the first step, and the process's peak RSS (``ru_maxrss`` of the
   finished child).

Both are measured ``--repeats`` times per row, alternating (plan, train, plan, train, ...), and
compared by their medians: this host's speed drifts by 2-3x within minutes, so a single plan and a
single run minutes apart measure the drift as much as the planner.

It prints one row per (model, method) with both numbers and their ratio, and writes
``benchmarks/out/plan/results.json``. The issue's bar: each ratio within 25% (0.75 to 1.25).
Converting a base GGUF to float32 happens once, before the first training run; run the script a
second time if that conversion's memory spoiled the first row of a model.

Run (about 30 minutes on 2 idle cores with the default 3 repeats):
``.venv/bin/python benchmarks/bench_plan.py --models smollm2-135m,gemma3-270m
--methods lora,prompt-tuning,full --steps 6 --seq-len 256``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "out" / "plan"
APPKIT = [sys.executable, "-m", "appkit.cli"]


def write_rows(path: Path, n: int) -> Path:
    text = ("The committee met on Tuesday and agreed to move the launch to May, after the "
            "supplier confirmed the parts would arrive in April. ") * 40
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({"instruction": f"Summarise note {i}.", "input": text,
                                "output": "The launch moves to May."}) + "\n")
    return path


def measure_one(model: str, method: str, args: argparse.Namespace, data: Path) -> dict:
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    # each measurement in a fresh interpreter so RUSAGE_CHILDREN starts at zero
    code = ("import json, resource, subprocess, sys; p = subprocess.run(sys.argv[1:], "
            "capture_output=True, text=True); print(json.dumps({'rc': p.returncode, "
            "'out': p.stdout, 'err': p.stderr[-3000:], 'maxrss_kib': "
            "resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))")

    def child(argv: list[str]) -> tuple[str, int]:
        proc = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True,
                              text=True, env=env, cwd=REPO)
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        if result["rc"] != 0:
            raise SystemExit(f"{' '.join(argv)} failed:\n{result['err']}")
        return result["out"], result["maxrss_kib"] * 1024

    from finetune.runs import Run

    planned, measured, peaks, names = [], [], [], []
    for _ in range(args.repeats):
        plan_out, _ = child([*APPKIT, "plan", model, "--seq-len", str(args.seq_len),
                             "--batch-size", str(args.batch_size), "--method", method,
                             "--tokens", "100000", "--steps", str(args.plan_steps),
                             "--threads", str(args.threads), "--json"])
        plan = json.loads(plan_out)
        planned.append(plan["step_seconds"].get(method) or float("nan"))
        name = f"bench-plan-{model}-{method}-{int(time.time())}"
        _, peak = child([*APPKIT, "finetune", method, "--base", model, "--data", str(data),
                         "--name", name, "--max-steps", str(args.steps), "--max-tokens",
                         str(args.seq_len), "--batch-size", str(args.batch_size), "--save-every",
                         "100000", "--threads", str(args.threads), "--json"])
        steps = [r["step_s"] for r in Run.open(name).history()][1:]  # the first step warms up
        measured.append(statistics.median(steps) if steps else float("nan"))
        peaks.append(peak)
        names.append(name)
    predicted_step, measured_step = statistics.median(planned), statistics.median(measured)
    # the memory plan is arithmetic on the model's shape: every repeat gives the same figure
    predicted_mem, peak = plan["training"][method]["total"], statistics.median(peaks)
    return {"model": model, "method": method, "seq_len": args.seq_len,
            "batch_size": args.batch_size, "predicted_step_s": predicted_step,
            "measured_step_s": measured_step,
            "step_ratio": predicted_step / measured_step if predicted_step else None,
            "predicted_peak_bytes": predicted_mem, "measured_peak_bytes": peak,
            "memory_ratio": predicted_mem / peak, "runs": names,
            "planned_step_s_each": [round(x, 3) for x in planned],
            "measured_step_s_each": [round(x, 3) for x in measured],
            "peak_bytes_each": peaks, "load_average": os.getloadavg()[0]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="smollm2-135m,gemma3-270m")
    p.add_argument("--methods", default="lora,prompt-tuning,full")
    p.add_argument("--steps", type=int, default=6, help="training steps per run")
    p.add_argument("--plan-steps", type=int, default=2, help="timed steps of the micro-benchmark")
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--repeats", type=int, default=3,
                   help="plan/train pairs per row, alternating; medians are compared")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    data = write_rows(OUT / "rows.jsonl", max(8, args.steps * args.batch_size))
    rows = []
    for model in args.models.split(","):
        for method in args.methods.split(","):
            row = measure_one(model, method, args, data)
            rows.append(row)
            print(f"{model:<14} {method:<14} step {row['predicted_step_s'] or 0:6.2f} s planned / "
                  f"{row['measured_step_s']:6.2f} s measured ({row['step_ratio'] or 0:.2f})  "
                  f"memory {row['predicted_peak_bytes'] / 2**20:7.0f} MB planned / "
                  f"{row['measured_peak_bytes'] / 2**20:7.0f} MB peak RSS "
                  f"({row['memory_ratio']:.2f})  load {row['load_average']:.1f}", flush=True)
            (OUT / "results.json").write_text(json.dumps(rows, indent=2))
    bad = [r for r in rows if not (0.75 <= (r["step_ratio"] or 0) <= 1.25
                                   and 0.75 <= r["memory_ratio"] <= 1.25)]
    print(f"{len(rows) - len(bad)} of {len(rows)} within 25% on both step time and memory")


if __name__ == "__main__":
    main()
