"""Distillation benchmark: Qwen2.5-Coder-0.5B (GGUF, llama.cpp) -> SmolLM2-135M, sequence level.

Stages (each writes its numbers into ``benchmarks/out/distill/results.json`` as it finishes, so a
long run can be stopped and continued with ``--stages``):

* ``data``: SQuAD v1.1 dev (read from ``../shared/bench/squad``, never copied into the repository)
  split by article into training prompts and held-out questions, as ``bench_finetune_squad.py``
  does; derived files go to the appkit cache.
* ``vocab``: the two GGUF vocabularies (so ``auto`` picks sequence level).
* ``distill``: ``finetune.distill``: the teacher answers the training prompts (greedy), the student
  is fully fine-tuned on its answers under a step / time budget, then registered.
* ``export``: the distilled run as a Q8_0 GGUF (``appkit finetune export``), for a llama.cpp speed
  comparison on equal terms.
* ``eval``: token F1 / EM on the held-out questions (gold paragraph as context, the same prompt)
  for the untuned student and the distilled student (both float32 through transformers, so the
  only difference is the training) and the teacher (its GGUF through llama.cpp).
* ``refusals``: the correct-refusal rate of the same three models on ``--unanswerable`` held-out
  questions asked beside another article's paragraph (the cost of ``--keep spans``).
* ``speed``: llama.cpp prompt and generation tokens/s of the teacher and of the student GGUFs.

A second student (``--run NAME``, e.g. with ``--keep grounded --teacher-answers`` an earlier run's
``teacher.jsonl``) keeps its numbers under ``"<stage> [NAME]"`` beside the first's.

The goal of issue 11: the distilled student above the untuned one and within 5 F1 points of the
teacher, at >= 2x the teacher's generation tokens/s.

Run: ``.venv/bin/python benchmarks/bench_distill.py --questions 200 --train-rows 400 --minutes 30``
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_finetune_squad as squad  # noqa: E402  (SQUAD path, prompt, llama.cpp speed)

OUT = REPO / "benchmarks" / "out" / "distill"
RESULTS = OUT / "results.json"
DEFAULT_RUN = "bench-distill-smollm2"


save = squad.saver(RESULTS)


def key(args, name: str) -> str:
    """The results key of ``name`` for this run (the teacher's and the untuned student's are
    shared by every run)."""
    return squad.run_key(name, args.run, DEFAULT_RUN)


def work_dir() -> Path:
    from finetune.base import finetune_home

    return finetune_home() / "bench-distill"


def stage_data(args) -> None:
    from finetune.data import write_rows

    rows, held, articles = squad.split_squad()
    held_titles = {r.group for r in held}
    titles = range(articles)
    # a prompt only: the teacher writes the target
    train = [{"instruction": r.instruction, "input": r.input, "group": r.group} for r in rows]
    d = work_dir()
    d.mkdir(parents=True, exist_ok=True)
    (d / "prompts.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in train[:args.train_rows]), encoding="utf-8")
    write_rows(held[:args.questions], d / "heldout.jsonl")
    save("data", {"articles": len(titles), "heldout_articles": len(held_titles),
                  "train_prompts": min(len(train), args.train_rows),
                  "heldout_questions": min(len(held), args.questions)})


def stage_vocab(args) -> None:
    from finetune.distill import pick_mode, vocabulary

    t, s = vocabulary(args.teacher), vocabulary(args.student)
    save("vocab", {"teacher_tokens": len(t), "student_tokens": len(s),
                   "shared": len(set(t) & set(s)), "auto_mode": pick_mode("auto", t, s)})


def stage_distill(args) -> None:
    from finetune.distill import DistillConfig, distill
    from finetune.runs import Run, runs_dir

    if not (runs_dir() / args.run).exists():
        config = DistillConfig(
            teacher=args.teacher, student=args.student, data=str(work_dir() / "prompts.jsonl"),
            mode="sequence", method="full", max_new_tokens=args.max_answer, lr=args.lr,
            teacher_answers=args.teacher_answers, keep=args.keep,
            batch_size=2, epochs=args.epochs, max_steps=args.steps, max_minutes=args.minutes,
            max_tokens=args.max_tokens, save_every=25, threads=args.threads,
            prompt=squad.prompt_config())
        distill(config, name=args.run)
    run = Run.open(args.run)
    hist = run.history()
    info = run.info
    save(key(args, "distill"), {
        "run": args.run, "status": info.get("status"), "steps": info.get("step"),
        "teacher_rows": info.get("teacher_rows"), "teacher_seconds": info.get("teacher_seconds"),
        "target_rows": info.get("target_rows", info.get("teacher_rows")),
        "train_seconds": info.get("train_seconds"), **squad.loss_summary(hist)})


def stage_export(args) -> None:
    from finetune.export import export_run

    res = export_run(args.run, quants=("q8_0",), mode="merged", name=args.run)
    save(key(args, "export"), {"seconds": round(res.seconds, 1),
                               "files": {k: str(v) for k, v in res.files.items()}})


def _models(args) -> dict:
    """Label -> a function that builds that chat model: untuned student, this run's distilled
    student, teacher."""
    from appkit.models.catalogue import get_spec, resolve_model
    from appkit.models.transformers_chat import TransformersChatModel
    from finetune.check import make_model
    from finetune.distill import model_folder

    settings = dict(max_tokens=args.max_answer, temperature=0.0, top_k=1, repeat_penalty=1.0)
    return {
        "student (untuned)": lambda: TransformersChatModel(
            model_path=str(model_folder(args.student)[0]), **settings),
        key(args, "student (distilled)"): lambda: TransformersChatModel(
            model_path=get_spec(args.run).local_path, **settings),
        "teacher": lambda: make_model(str(resolve_model(args.teacher)[1]),
                                      max_tokens=args.max_answer, threads=args.threads),
    }


def stage_eval(args) -> None:
    from finetune.data import read_rows

    rows = read_rows(work_dir() / "heldout.jsonl")[0][:args.questions]
    squad.score_models(RESULTS, "eval", _models(args), rows)


def stage_refusals(args) -> None:
    """The held-out questions again, each beside another article's paragraph: the right answer
    is a refusal, so ``refusal_rate`` is the correct-refusal rate (F1 against the refusal text
    means nothing here)."""
    from finetune.check import REFUSAL
    from finetune.data import Example, read_rows
    from finetune.dpo import auto_pairs

    rows = read_rows(work_dir() / "heldout.jsonl")[0][:args.questions]
    probes = [Example(p.question, REFUSAL, input=p.context)
              for p in auto_pairs(rows, seed=0, answerable=False)][:args.unanswerable]
    squad.score_models(RESULTS, "refusals", _models(args), probes)


def stage_speed(args) -> None:
    from appkit.models.catalogue import resolve_model

    paths = {"teacher": str(resolve_model(args.teacher)[1]),
             "student": str(resolve_model(args.student)[1])}
    exported = json.loads(RESULTS.read_text()).get(key(args, "export"), {}).get("files", {}) \
        if RESULTS.exists() else {}
    if "q8_0" in exported:
        paths["student (distilled, Q8_0)"] = exported["q8_0"]
    out = {label: squad.speed(p, args.threads) for label, p in paths.items()}
    out["student_vs_teacher_gen"] = round(out["student"]["gen_tps"] / out["teacher"]["gen_tps"], 2)
    save(key(args, "speed"), out)


STAGES = {"data": stage_data, "vocab": stage_vocab, "distill": stage_distill,
          "export": stage_export, "eval": stage_eval, "refusals": stage_refusals,
          "speed": stage_speed}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--teacher", default="qwen2.5-coder-0.5b")
    p.add_argument("--student", default="smollm2-135m")
    p.add_argument("--run", default=DEFAULT_RUN)
    p.add_argument("--teacher-answers", default="",
                   help="reuse an earlier run's teacher.jsonl (the same --train-rows)")
    p.add_argument("--keep", choices=["all", "grounded", "spans"], default="all",
                   help="grounded: train only on answers found in the paragraph, and refusals; "
                        "spans: only on answers found in the paragraph")
    p.add_argument("--train-rows", type=int, default=400, help="training prompts")
    p.add_argument("--questions", type=int, default=200, help="held-out questions")
    p.add_argument("--unanswerable", type=int, default=100,
                   help="held-out questions asked beside an unrelated paragraph (refusals)")
    p.add_argument("--max-answer", type=int, default=32, help="longest answer (teacher and eval)")
    p.add_argument("--max-tokens", type=int, default=384, help="tokens per training text")
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--steps", type=int, default=0)
    p.add_argument("--minutes", type=float, default=30.0, help="training time budget")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    for stage in args.stages.split(","):
        t0 = time.perf_counter()
        STAGES[stage.strip()](args)
        print(f"stage {stage} done in {time.perf_counter() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
