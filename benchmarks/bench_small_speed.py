"""llama.cpp speed of the issue-11 models, measured through the host's drift.

The teacher and student of ``bench_distill.py`` (and the distilled Q8_0 export) and the original
and pruned Q4_K_M files of ``bench_prune.py`` (same GGUF writer), each measured ``--rounds`` times,
once per round, in an order that rotates every round; prompt and generation tokens/s are medians
(the speed of one llama.cpp call, ``bench_finetune_squad.speed``: 256 prompt tokens, 32 greedy
tokens). Run the ``export``/``speed`` stages of both scripts first. Results:
``benchmarks/out/small_speed/results.json``.

Run: ``.venv/bin/python benchmarks/bench_small_speed.py --rounds 5 --threads 1``
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
OUT = REPO / "benchmarks" / "out" / "small_speed"


def models(args: argparse.Namespace) -> dict[str, str]:
    from appkit.models.catalogue import resolve_model
    from finetune.base import finetune_home
    from finetune.export import exports_dir

    out = {"teacher": str(resolve_model(args.teacher)[1]),
           "student (packaged)": str(resolve_model(args.student)[1])}
    candidates = {
        "distilled student (Q8_0)": exports_dir() / args.distilled / f"{args.distilled}-q8_0.gguf",
        "original (Q4_K_M, same writer)": finetune_home() / "bench-prune" / "original-q4_k_m.gguf",
        "pruned (Q4_K_M)": exports_dir() / args.pruned / f"{args.pruned}-q4_k_m.gguf",
    }
    out.update({k: str(v) for k, v in candidates.items() if v.exists()})
    return out


def main() -> None:
    import bench_finetune_squad as squad

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--teacher", default="qwen2.5-coder-0.5b")
    p.add_argument("--student", default="smollm2-135m")
    p.add_argument("--distilled", default="bench-distill-smollm2")
    p.add_argument("--pruned", default="bench-prune-smollm2")
    args = p.parse_args()
    paths = models(args)
    names = list(paths)
    runs: dict[str, list[dict]] = {n: [] for n in names}
    for r in range(args.rounds):
        for n in names[r % len(names):] + names[:r % len(names)]:
            runs[n].append(squad.speed(paths[n], args.threads))
    res: dict = {n: {"gen_tps": statistics.median(x["gen_tps"] for x in v),
                     "prompt_tps": statistics.median(x["prompt_tps"] for x in v),
                     "gen_each": [x["gen_tps"] for x in v], "file": paths[n]}
                 for n, v in runs.items()}
    gen = {n: res[n]["gen_tps"] for n in names}
    ratios = {"student_vs_teacher": ("student (packaged)", "teacher"),
              "distilled_vs_teacher": ("distilled student (Q8_0)", "teacher"),
              "pruned_vs_original": ("pruned (Q4_K_M)", "original (Q4_K_M, same writer)")}
    res["generation_ratios"] = {k: round(gen[a] / gen[b], 2) for k, (a, b) in ratios.items()
                                if a in gen and b in gen}
    res["rounds"], res["threads"] = args.rounds, args.threads
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "results.json").write_text(json.dumps(res, indent=2))
    for n in names:
        print(f"{n:<32} gen {gen[n]:6.1f} tok/s  prompt {res[n]['prompt_tps']:6.1f} tok/s")
    print(json.dumps(res["generation_ratios"]))


if __name__ == "__main__":
    main()
