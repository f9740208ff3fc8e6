"""SQuAD fine-tuning benchmark: base vs LoRA-tuned Gemma 3 270M, quantization, DPO, forgetting.

Stages (each writes its numbers into ``benchmarks/out/finetune/results.json`` as it finishes, so a
long run can be stopped and continued with ``--stages``):

* ``data``: SQuAD v1.1 dev (read from ``../shared/bench/squad``) split by article into train and
  held-out; derived files go to the appkit cache, never into the repository.
* ``train``: LoRA (r=8, all projections) with the ``appkit finetune`` trainer, under a time budget.
* ``export``: merged F16 GGUF, then Q8_0 and Q4_K_M with llama.cpp's quantizer.
* ``eval``: token F1 / EM on held-out questions (gold paragraph as context, the same prompt for
  every model) for the base and each export, with file size and prompt/generation tokens/s.
* ``speed``: prompt and generation tokens/s of every file again, interleaved (medians).
* ``retain``: the forgetting check on a different task (SciFact abstracts -> titles).
* ``dpo``: DPO on automatic pairs; refusal rate on held-out unanswerable questions (question with
  an unrelated paragraph) and F1 on answerable ones, before and after.
* ``steptime``: seconds per LoRA step of our trainer vs a plain peft loop on the same batch.

Run: ``.venv/bin/python benchmarks/bench_finetune_squad.py --questions 200 --minutes 15``
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
SQUAD = REPO.parent / "shared" / "bench" / "squad" / "dev-v1.1.json"
SCIFACT = REPO.parent / "shared" / "bench" / "scifact" / "corpus.jsonl"
OUT = REPO / "benchmarks" / "out" / "finetune"
RESULTS = OUT / "results.json"

SYSTEM = ("Answer the question with a short phrase copied from the source. If the source does not "
          "answer it, say: The documents do not say.")
TEMPLATE = "Sources:\n{context}\n\nQuestion: {question}"


def prompt_config(template: str = TEMPLATE):
    from appkit.config import PromptConfig

    return PromptConfig(system=SYSTEM, template=template)


def load_results(results: Path) -> dict:
    """The stages' results saved so far (empty before the first)."""
    return json.loads(results.read_text()) if results.exists() else {}


def saver(results: Path):
    """A ``save(key, value)`` that records one stage's result in ``results`` (JSON), printed."""
    def save(key: str, value) -> None:
        results.parent.mkdir(parents=True, exist_ok=True)
        data = load_results(results)
        data[key] = value
        results.write_text(json.dumps(data, indent=2))
        print(f"[{key}] {json.dumps(value)[:400]}", flush=True)
    return save


def score_models(results: Path, stage: str, models: dict, rows) -> None:
    """Score each model of ``models`` (label -> a function that builds it) on ``rows`` and record
    the scores under ``stage`` in ``results``; models already scored on as many rows are
    skipped, so a stopped run continues where it was."""
    from finetune.check import score_rows

    done = load_results(results).get(stage, {})
    for label, build in models.items():
        if label in done and done[label]["n"] == len(rows):
            continue
        t0 = time.perf_counter()
        s = score_rows(build(), rows, prompt=prompt_config(), desc=f"{stage}: {label}")
        # re-read before writing: another benchmark process may have recorded a score meanwhile
        done = {**load_results(results).get(stage, {}),
                label: {**s.summary(), "seconds": round(time.perf_counter() - t0, 1)}}
        saver(results)(stage, done)


def loss_summary(history: list[dict]) -> dict:
    """A run's first loss and the mean of its last ten logged losses."""
    last = history[-10:]
    return {"first_loss": history[0]["loss"] if history else None,
            "last10_loss": round(sum(h["loss"] for h in last) / max(1, len(last)), 4)}


def run_key(name: str, run: str, default: str) -> str:
    """The results key of stage ``name`` for ``run``: a run other than the script's ``default``
    keeps its numbers under ``"<name> [<run>]"`` beside the default run's."""
    return name if run == default else f"{name} [{run}]"


def save(key: str, value) -> None:
    """Record one stage's result in the current ``RESULTS`` file (``--results`` may change it)."""
    saver(RESULTS)(key, value)


def work_dir() -> Path:
    from finetune.base import finetune_home

    return finetune_home() / "bench-squad"


def split_squad(held_articles: int = 10, seed: int = 0) -> tuple[list, list, int]:
    """SQuAD dev split by article: (train rows, held-out rows, articles), both shuffled.

    A training row's output is the first answer; a held-out row's is every answer joined by
    ``" ||| "`` (F1 takes the best).
    """
    from eval.testset import iter_squad
    from finetune.data import Example

    titles = sorted({t for t, _, _, _ in iter_squad(SQUAD)})
    rng = random.Random(seed)
    rng.shuffle(titles)
    held_titles = set(titles[:held_articles])
    train, held = [], []
    for title, _, context, qa in iter_squad(SQUAD):
        answers = list(dict.fromkeys(a["text"].strip() for a in qa["answers"]))
        row = Example(qa["question"].strip(), answers[0], input=context, group=title)
        if title in held_titles:
            held.append(Example(row.instruction, " ||| ".join(answers), input=context, group=title))
        else:
            train.append(row)
    rng.shuffle(train)
    rng.shuffle(held)
    return train, held, len(titles)


def stage_data(args) -> None:
    from finetune.data import write_rows

    train, held, articles = split_squad()
    held_titles = {r.group for r in held}
    titles = range(articles)
    d = work_dir()
    write_rows(train, d / "train.jsonl")
    write_rows(held[:1000], d / "heldout.jsonl")
    save("data", {"articles": len(titles), "heldout_articles": len(held_titles),
                  "train_rows": len(train), "heldout_rows": len(held)})


def stage_train(args) -> None:
    from finetune.trainer import TrainConfig, train

    cfg = TrainConfig(base="gemma3-270m", data=str(work_dir() / "train.jsonl"), r=8, alpha=16,
                      lr=args.lr, batch_size=2, max_steps=args.steps, max_minutes=args.minutes,
                      max_tokens=args.max_tokens, save_every=10, warmup=0.03, threads=args.threads,
                      prompt=prompt_config())
    from finetune.runs import Run, runs_dir

    if not (runs_dir() / args.run).exists():
        train(cfg, name=args.run)
    elif Run.open(args.run).info.get("status") != "finished":
        train(resume=args.run)
    run = Run.open(args.run)
    hist = run.history()
    info = run.info
    save("train", {"run": args.run, "status": info.get("status"),
                   "stopped_by": info.get("stopped_by"), "steps": info.get("step"),
                   "seconds": info.get("train_seconds"),
                   "s_per_step": round(sum(h["step_s"] for h in hist) / max(1, len(hist)), 2),
                   **loss_summary(hist),
                   "examples_seen": info.get("step", 0) * 2})


def stage_export(args) -> None:
    from finetune.export import export_run

    res = export_run(args.run, quants=("f16", "q8_0", "q4_k_m"), mode="merged",
                     name=f"{args.run}")
    lora = export_run(args.run, mode="lora", name=f"{args.run}")
    save("export", {"seconds": round(res.seconds, 1),
                    "files": {k: str(v) for k, v in res.files.items()},
                    "lora": str(lora.files["lora"]), "models": [m.name for m in res.models]})


def speed(path: str, threads: int, lora: str = "") -> dict:
    import llama_cpp

    llama = llama_cpp.Llama(model_path=path, n_ctx=1024, n_threads=threads or 2, verbose=False,
                            lora_path=lora or None)
    text = ("The quick brown fox jumps over the lazy dog. " * 30).encode()
    toks = llama.tokenize(text, add_bos=True)[:256]
    llama.reset()
    t0 = time.perf_counter()
    llama.eval(toks)
    t1 = time.perf_counter()
    n_gen = 32
    for _ in range(n_gen):
        tok = llama.sample(top_k=1)
        llama.eval([tok])
    t2 = time.perf_counter()
    llama.close()
    return {"prompt_tps": round(len(toks) / (t1 - t0), 1), "gen_tps": round(n_gen / (t2 - t1), 1)}


def stage_eval(args) -> None:
    from appkit.models.catalogue import resolve_model
    from finetune.check import make_model, score_rows
    from finetune.data import read_rows

    rows = read_rows(work_dir() / "heldout.jsonl")[0][:args.questions]
    exports = json.loads(RESULTS.read_text()).get("export", {}).get("files", {})
    models = {"base (Q4_K_M)": str(resolve_model("gemma3-270m")[1])}
    for quant in args.quants.split(","):
        models[f"tuned {quant.upper()}"] = exports[quant]
    done = json.loads(RESULTS.read_text()).get("eval", {}) if RESULTS.exists() else {}
    redo = {x.strip() for x in args.redo.split(",") if x.strip()}
    for label, path in models.items():
        if label in done and done[label]["n"] == len(rows) and label not in redo:
            continue
        m = make_model(path, max_tokens=args.max_answer, threads=args.threads)
        s = score_rows(m, rows, prompt=prompt_config(), desc=label)
        save_answers(label, rows, s.answers)
        done[label] = {**s.summary(), "size_mb": round(os.path.getsize(path) / 1e6, 1),
                       **speed(path, args.threads)}
        save("eval", done)
    save("paired", paired_f1(rows, [label for label in models if answers_file(label).exists()]))


def answers_file(label: str) -> Path:
    return RESULTS.parent / "answers" / (label.replace(" ", "_").replace("(", "").replace(")", "")
                                         + ".json")


def save_answers(label: str, rows, answers: list[str]) -> None:
    """Each question's answer, so two models can be compared question by question."""
    path = answers_file(label)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([{"question": r.instruction, "answer": a}
                                for r, a in zip(rows, answers)], indent=0))


def paired_f1(rows, labels: list[str]) -> dict:
    """Token F1 difference of every pair of models on the same questions, with its standard
    error (the spread of the per-question differences / sqrt(n))."""
    import statistics

    from eval.metrics.squad import token_f1
    from finetune.check import references

    per = {}
    for label in labels:
        got = json.loads(answers_file(label).read_text())
        if len(got) != len(rows):
            continue
        per[label] = [100 * token_f1(g["answer"], references(r.output))
                      for g, r in zip(got, rows)]
    out = {}
    names = list(per)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            d = [x - y for x, y in zip(per[a], per[b])]
            out[f"{a} - {b}"] = {"diff": round(statistics.mean(d), 2),
                                 "se": round(statistics.stdev(d) / len(d) ** 0.5, 2),
                                 "changed": sum(1 for x in d if x)}
    return out


def stage_speed(args) -> None:
    """Tokens/s of every file again, interleaved, medians of ``--speed-reps`` (for an idle run:
    ``eval`` measures each file right after scoring it, at whatever load there was then)."""
    import statistics

    from appkit.models.catalogue import resolve_model

    files = {"base (Q4_K_M)": str(resolve_model("gemma3-270m")[1])}
    files.update({f"tuned {q.upper()}": p
                  for q, p in load_results(RESULTS)["export"]["files"].items()})
    lora = load_results(RESULTS)["export"]["lora"]
    files["tuned LoRA GGUF over base Q4_K_M"] = files["base (Q4_K_M)"]
    got: dict[str, list[dict]] = {k: [] for k in files}
    for _ in range(args.speed_reps):
        for label, path in files.items():
            got[label].append(speed(path, args.threads, lora if "LoRA" in label else ""))
    save("speed", {label: {"prompt_tps": statistics.median(r["prompt_tps"] for r in runs),
                           "gen_tps": statistics.median(r["gen_tps"] for r in runs),
                           "reps": len(runs), "threads": args.threads or 2}
                   for label, runs in got.items()})


def stage_evallora(args) -> None:
    """The LoRA GGUF adapter over the base's own Q4_K_M file, on the same questions."""
    from appkit.models.catalogue import resolve_model
    from finetune.check import make_model, score_rows
    from finetune.data import read_rows

    rows = read_rows(work_dir() / "heldout.jsonl")[0][:args.questions]
    lora = json.loads(RESULTS.read_text())["export"]["lora"]
    base = str(resolve_model("gemma3-270m")[1])
    m = make_model(base, lora_path=lora, max_tokens=args.max_answer, threads=args.threads)
    s = score_rows(m, rows, prompt=prompt_config(), desc="LoRA GGUF")
    done = json.loads(RESULTS.read_text()).get("eval", {})
    done["tuned LoRA GGUF over base Q4_K_M"] = {
        **s.summary(), "size_mb": round((os.path.getsize(base) + os.path.getsize(lora)) / 1e6, 1)}
    save("eval", done)


def stage_retain(args) -> None:
    from appkit.models.catalogue import resolve_model
    from finetune.check import make_model, score_rows
    from finetune.data import Example

    docs = [json.loads(line) for line in SCIFACT.read_text().splitlines()[:2000]]
    rng = random.Random(1)
    rng.shuffle(docs)
    rows = [Example("Write the title of this scientific abstract.", d["title"],
                    input=d["text"][:600], task="title") for d in docs[:args.retain]]
    files = json.loads(RESULTS.read_text())["export"]
    out = {}
    for label, path, lora in (("base", str(resolve_model("gemma3-270m")[1]), ""),
                              ("tuned (LoRA GGUF)", str(resolve_model("gemma3-270m")[1]),
                               files["lora"])):
        m = make_model(path, lora_path=lora, max_tokens=32, threads=args.threads)
        out[label] = score_rows(m, rows, prompt=prompt_config(), desc=f"retain {label}").summary()
    out["delta_token_f1"] = round(out["tuned (LoRA GGUF)"]["token_f1"] - out["base"]["token_f1"], 2)
    out["warn"] = out["delta_token_f1"] < -2
    save("retain", out)


def stage_dpo(args) -> None:
    from appkit.models.catalogue import resolve_model
    from finetune.check import make_model, score_rows, tuned_model_files
    from finetune.data import Example, read_rows
    from finetune.dpo import auto_pairs, train_dpo
    from finetune.runs import Run, runs_dir

    train_rows = read_rows(work_dir() / "train.jsonl")[0]
    rng = random.Random(2)
    pairs = auto_pairs(rng.sample(train_rows, args.dpo_rows), seed=2)
    name = args.dpo_name or f"{args.run}-dpo"
    if not (runs_dir() / name).exists():
        train_dpo(args.run, pairs, name=name, lr=args.dpo_lr, beta=args.dpo_beta, batch_size=2,
                  max_steps=args.dpo_steps, max_tokens=args.max_tokens, threads=args.threads,
                  sft_weight=args.dpo_sft_weight)
    elif Run.open(name).info.get("status") != "finished":
        train_dpo(None, [], resume=name, threads=args.threads)
    held = read_rows(work_dir() / "heldout.jsonl")[0]
    answerable = held[:args.dpo_questions]
    others = held[args.dpo_questions:]
    unanswerable = []
    pick = random.Random(3)  # the same held-out set whatever --dpo-rows is
    for r in answerable:
        other = next(o for o in pick.sample(others, 20) if o.group != r.group)
        unanswerable.append(Example(r.instruction, r.output, input=other.input, group=other.group))
    base_gguf = str(resolve_model("gemma3-270m")[1])
    info = Run.open(name).info
    out = {"run": name, "pairs": len(pairs), "steps": info.get("step"),
           "seconds": info.get("train_seconds"), "settings": info.get("dpo")}
    sft = load_results(RESULTS).get("dpo_sft", {})
    for label, run in (("sft", args.run), ("sft+dpo", name)):
        tag = f"dpo answerable {run}"
        if label == "sft" and sft.get("n") == len(answerable) and answers_file(tag).exists():
            out[label] = sft
            continue
        _, adapter = tuned_model_files(Run.open(run))
        m = make_model(base_gguf, lora_path=str(adapter), max_tokens=args.max_answer,
                       threads=args.threads)
        a = score_rows(m, answerable, prompt=prompt_config(), desc=f"{label} answerable")
        save_answers(tag, answerable, a.answers)
        u = score_rows(m, unanswerable, prompt=prompt_config(), desc=f"{label} unanswerable")
        save_answers(f"dpo unanswerable {run}", unanswerable, u.answers)
        out[label] = {"answerable_f1": round(a.token_f1, 2),
                      "answerable_refusals": round(a.refusal_rate, 1),
                      "unanswerable_refusals": round(u.refusal_rate, 1), "n": len(answerable)}
        if label == "sft":
            save("dpo_sft", out[label])
    out["paired_answerable_f1"] = paired_f1(
        answerable, [f"dpo answerable {args.run}", f"dpo answerable {name}"])
    save(f"dpo/{name}", out)


def stage_steptime(args) -> None:
    import torch

    from finetune.data import read_rows
    from finetune.runs import Run
    from finetune.trainer import TrainConfig, Trainer, build_model, collate, encode_rows

    cfg = TrainConfig(base=args.step_base, data="-", max_tokens=128, threads=args.threads)
    model, base = build_model(cfg, log=lambda s: None)
    rows = read_rows(work_dir() / "train.jsonl")[0][:2]
    enc, _ = encode_rows(rows, base.tokenizer, chat_template=base.has_chat_template,
                         max_tokens=128, prompt=prompt_config())
    import tempfile

    run = Run.create("steptime", {}, root=tempfile.mkdtemp())
    trainer = Trainer(model, enc, cfg, run, pad_id=base.tokenizer.pad_token_id, progress=False)
    batch = collate(enc, base.tokenizer.pad_token_id)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)

    def plain() -> float:
        t = time.perf_counter()
        loss = model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return time.perf_counter() - t

    def ours() -> float:
        t = time.perf_counter()
        trainer.train_step(trainer.micro_batches(0))
        return time.perf_counter() - t

    plain(), ours()  # warm-up
    times = {"plain": [], "ours": []}
    for i in range(args.step_reps):  # interleaved, first one then the other, so load hits both
        for label in (("plain", "ours") if i % 2 == 0 else ("ours", "plain")):
            times[label].append(plain() if label == "plain" else ours())
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    save("steptime", {"base": args.step_base, "tokens": list(batch["input_ids"].shape),
                      "plain_s": round(med["plain"], 3), "ours_s": round(med["ours"], 3),
                      "ratio": round(med["ours"] / med["plain"], 3), "reps": args.step_reps})


def run_stages(stages: dict, names: str, args) -> None:
    """Run the comma-separated ``names`` of ``stages`` in order, timing each."""
    for stage in names.split(","):
        t = time.perf_counter()
        stages[stage](args)
        print(f"stage {stage}: {time.perf_counter() - t:.0f}s", flush=True)


STAGES = {"data": stage_data, "train": stage_train, "export": stage_export, "eval": stage_eval,
          "evallora": stage_evallora, "speed": stage_speed,
          "retain": stage_retain, "dpo": stage_dpo, "steptime": stage_steptime}


def main() -> None:
    global RESULTS
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--run", default="bench-squad-gemma")
    p.add_argument("--questions", type=int, default=200)
    p.add_argument("--minutes", type=float, default=15.0)
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--max-tokens", type=int, default=320)
    p.add_argument("--max-answer", type=int, default=24)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--quants", default="q4_k_m,q8_0,f16", help="exports to score, in this order")
    p.add_argument("--retain", type=int, default=50)
    p.add_argument("--redo", default="", help="eval: score these labels again (comma-separated)")
    p.add_argument("--speed-reps", type=int, default=3)
    p.add_argument("--dpo-rows", type=int, default=60)
    p.add_argument("--dpo-steps", type=int, default=30)
    p.add_argument("--dpo-lr", type=float, default=5e-5)
    p.add_argument("--dpo-questions", type=int, default=50)
    p.add_argument("--dpo-beta", type=float, default=0.1)
    p.add_argument("--dpo-sft-weight", type=float, default=0.0,
                   help="weight of the likelihood term on chosen answers (RPO; 0: plain DPO)")
    p.add_argument("--dpo-name", default="", help="the DPO run's name (default: RUN-dpo)")
    p.add_argument("--step-base", default="smollm2-135m")
    p.add_argument("--step-reps", type=int, default=7)
    p.add_argument("--results", default=str(RESULTS),
                   help="the JSON file results go to (one per concurrently running process)")
    args = p.parse_args()
    RESULTS = Path(args.results)
    run_stages(STAGES, args.stages, args)


if __name__ == "__main__":
    main()
