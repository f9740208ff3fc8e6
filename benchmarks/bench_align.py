"""Alignment benchmark (issue 10): reward models, RL with a KL leash, best-of-n, the method table.

Stages (each writes its numbers into ``benchmarks/out/align/results.json`` as it finishes, so a
run can be stopped and continued with ``--stages``; derived files go to ``benchmarks/out/align``
and the appkit cache, never into the repository):

* ``data``: SQuAD v1.1 dev (read from ``../shared/bench/squad``) split by article with
  :func:`bench_finetune_squad.split_squad`; SFT rows, reward-model rows and RL prompts from the
  training articles; the held-out set from the held-out articles: answerable questions (gold
  paragraph as context), unanswerable variants (question + a paragraph of another held-out article)
  and harmful requests (the held-out half of the harmlessness set, with an unrelated paragraph).
  Preference pairs with ``appkit align pairs --auto ROWS --harmless``, split by prompt before
  anything trains.
* ``reward``: ``appkit align reward`` on MiniLM and on SmolLM2-135M with the same held-out pairs:
  pairwise accuracy overall / grounded / unanswerable / harmless, on pairs from unseen articles,
  training seconds, scoring pairs/s.
* ``sft``: the starting policy, a short LoRA run on SmolLM2-135M (the ``appkit finetune`` trainer).
* ``rl``: ``appkit align rl`` on the SFT run with the MiniLM reward model and the citation rule.
* ``answers``: every method answers the held-out set through the app's RAG chain (llama.cpp,
  greedy; best-of-4 through ``chat.best_of``'s code path) and ``appkit align score`` scores it.
* ``steptime``: seconds per step of :func:`finetune.rl.train_rl` vs the bare ``trl.RLOOTrainer``.
* ``dpo``: ``appkit finetune dpo`` on the SFT run (for the table, if time allows).
* ``table``: F1, correct refusals, harmful refusals, grounded answers, reward, training minutes.

Run (as measured for ``benchmarks/RESULTS_align.md``, one stage at a time, ``--threads 1`` on a
shared 2-core machine)::

    .venv/bin/python benchmarks/bench_align.py --stages data,reward --rm-decoder-steps 15
    # (the SmolLM2 reward model took 65 s/step and was stopped after 2 steps: not measured)
    .venv/bin/python benchmarks/bench_align.py --stages sft --sft-steps 80 --threads 1 --max-tokens 256
    .venv/bin/python benchmarks/bench_align.py --threads 1 --stages rl --rl-steps 40
    .venv/bin/python benchmarks/bench_align.py --threads 1 --stages answers --methods base,sft,rl
    .venv/bin/python benchmarks/bench_align.py --threads 1 --stages answers --methods "sft best-of-4" \
        --bestof-answerable 20 --bestof-unanswerable 15
    .venv/bin/python benchmarks/bench_align.py --threads 1 --stages table
    .venv/bin/python benchmarks/bench_align.py --threads 1 --stages steptime --step-runs 2 --step-steps 3
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_finetune_squad import (  # noqa: E402
    TEMPLATE, load_results, loss_summary, prompt_config as squad_prompt, run_stages, saver,
    split_squad)

OUT = REPO / "benchmarks" / "out" / "align"
DATA = OUT / "data"
RESULTS = OUT / "results.json"
APPKIT = str(Path(sys.executable).parent / "appkit")
save = saver(RESULTS)

# The house prompt of the SQuAD benchmark, asking for the citation the alignment metrics check.
ALIGN_TEMPLATE = TEMPLATE + "\nAnswer with a short phrase and cite the source, like [1]."
RM = "align-rm-minilm"
RM_DECODER = "align-rm-smollm"
SFT = "align-sft"
RL = "align-rl"
DPO = "align-sft-dpo"
POLICY_BASE = "smollm2-135m"
ANSWERS = OUT / "answers"


RL_LABEL = "rl"


SCORED = ".scored"


def use_reward_model(rm_tag: str) -> None:
    """Train, score and reward RL with ``align-rm-minilm{rm_tag}`` (a reward model trained on
    a later version of the pairs) instead of the first one. Answers scored by a reward model
    after ``-b`` go to ``X.scored{rm_tag}.jsonl`` (``-b``'s and the first one's, which it
    replaced, to ``X.scored.jsonl``), so one answers folder holds the scores of both."""
    global RM, SCORED
    RM = f"align-rm-minilm{rm_tag}"
    SCORED = ".scored" if rm_tag in ("", "-b") else f".scored{rm_tag}"


def use_tag(tag: str, rl_tag: str = "") -> None:
    """Name this variant's runs, answers and results after ``tag`` (the data and reward model
    stay shared), so a second SFT/RL/DPO setting does not overwrite the first; ``rl_tag`` names a
    second RL run from the same SFT policy (run ``align-rl{tag}{rl_tag}``, label ``rl{rl_tag}``)."""
    global SFT, RL, DPO, ANSWERS, RL_LABEL
    SFT, RL, DPO = f"align-sft{tag}", f"align-rl{tag}{rl_tag}", f"align-sft{tag}-dpo"
    ANSWERS = OUT / f"answers{tag}"
    RL_LABEL = f"rl{rl_tag}"


def prompt_config():
    return squad_prompt(ALIGN_TEMPLATE)


def results() -> dict:
    return load_results(RESULTS)


def appkit(*args: str, log: str = "") -> str:
    """Run an ``appkit`` command; its stdout is returned, stderr goes to ``log`` (or ours)."""
    print("$ appkit " + " ".join(args), flush=True)
    err = open(OUT / log, "a") if log else None
    try:
        res = subprocess.run([APPKIT, *args], stdout=subprocess.PIPE, stderr=err, text=True,
                             env={**os.environ, "HF_HUB_OFFLINE": "1"})
    finally:
        if err:
            err.close()
    if res.returncode not in (0, 1):
        print(res.stdout[-3000:])
        raise SystemExit(f"appkit {args[0]} {args[1]} failed ({res.returncode})")
    return res.stdout


def run_exists(name: str, finished: bool = True) -> bool:
    from finetune.runs import Run, runs_dir

    if not (runs_dir() / name).exists():
        return False
    return not finished or Run.open(name).info.get("status") == "finished"


# --- data ----------------------------------------------------------------------------------------


def stage_data(args) -> None:
    from finetune.check import references
    from finetune.data import Example, write_rows
    from finetune.prefs import (
        automatic_pairs, read_preferences, split_preferences, write_preferences)

    DATA.mkdir(parents=True, exist_ok=True)
    train, held, articles = split_squad(held_articles=args.held_articles)
    cite = lambda rows: [Example(r.instruction, f"{r.output} [1]", input=r.input, group=r.group)  # noqa: E731
                         for r in rows]
    sft_rows = cite(train[:args.sft_rows])
    rm_rows = train[args.sft_rows:args.sft_rows + args.rm_rows]
    rl_rows = train[args.sft_rows + args.rm_rows:args.sft_rows + args.rm_rows + args.rl_rows]
    write_rows(sft_rows, DATA / "sft.jsonl")
    write_rows(rm_rows, DATA / "rm_rows.jsonl")
    write_rows(rl_rows, DATA / "rl_prompts.jsonl")

    # preference pairs through the CLI, then split by prompt before anything trains; the 30
    # harmlessness prompts are split on their own (half held out) so the held-out side has enough
    appkit("align", "pairs", "--auto", str(DATA / "rm_rows.jsonl"), "--harmless",
           "-o", str(DATA / "pairs_all.jsonl"), "--json")
    pairs, _ = read_preferences(DATA / "pairs_all.jsonl")
    auto = [p for p in pairs if p.source != "harmless"]
    harm = [p for p in pairs if p.source == "harmless"]
    a_train, a_held = split_preferences(auto, args.rm_heldout, seed=0)
    h_train, h_held = split_preferences(harm, 0.5, seed=0)
    write_preferences(a_train + h_train, DATA / "pairs_train.jsonl")
    write_preferences(a_held + h_held, DATA / "pairs_heldout.jsonl")
    # pairs from held-out articles (never seen by anything): a second generalisation check
    write_preferences(automatic_pairs(unseen_rows(held, args), seed=1),
                      DATA / "pairs_unseen_articles.jsonl")

    # the held-out evaluation set
    rng = random.Random(3)
    cases = []
    for r in held[:args.answerable]:
        cases.append({"kind": "answerable", "question": r.instruction, "context": r.input,
                      "source": r.group, "answers": references(r.output)})
    pool = held[args.answerable:]
    for r in pool[:args.unanswerable]:
        other = next(o for o in rng.sample(held, 50) if o.group != r.group)
        cases.append({"kind": "unanswerable", "question": r.instruction, "context": other.input,
                      "source": other.group, "answers": []})
    harmful = sorted({p.prompt for p in h_held})
    for prompt in harmful:
        other = rng.choice(held)
        cases.append({"kind": "harmful", "question": prompt.removeprefix("Question: ").strip(),
                      "context": other.input, "source": other.group, "answers": []})
    (DATA / "heldout_cases.jsonl").write_text("".join(json.dumps(c) + "\n" for c in cases))
    counts = {k: sum(c["kind"] == k for c in cases)
              for k in ("answerable", "unanswerable", "harmful")}
    save("data", {"articles": articles, "heldout_articles": len({r.group for r in held}),
                  "sft_rows": len(sft_rows), "rm_rows": len(rm_rows), "rl_prompts": len(rl_rows),
                  "pairs_train": len(a_train) + len(h_train),
                  "pairs_heldout": len(a_held) + len(h_held),
                  "pairs_heldout_by_source": {s: sum(p.source == s for p in a_held + h_held)
                                              for s in ("grounded", "answerable", "unanswerable",
                                                        "harmless")},
                  "pairs_unseen_articles": len(read_preferences(
                      DATA / "pairs_unseen_articles.jsonl")[0]),
                  "heldout_cases": counts})


def cases() -> list[dict]:
    return [json.loads(x) for x in (DATA / "heldout_cases.jsonl").read_text().splitlines()]


# --- reward models -------------------------------------------------------------------------------


def unseen_rows(held: list, args) -> list:
    """The rows of ``held`` (the held-out articles' SQuAD rows) that no model sees: the
    unseen-articles pairs are made from them."""
    from finetune.check import references
    from finetune.data import Example

    start = args.answerable + args.unanswerable
    return [Example(r.instruction, references(r.output)[0], input=r.input, group=r.group)
            for r in held[start:start + args.unseen_rows]]


def near_miss_files(args) -> tuple[Path, Path]:
    """The pairs files plus near-miss pairs (``appkit align pairs --near-miss``: an answer over
    a wrong span of the same passage), each new pair on the side of the split
    its prompt is already on, so the held-out prompts stay unseen; and the near-miss pairs of
    the unseen articles (``pairs_unseen_near_miss.jsonl``)."""
    from finetune.prefs import automatic_pairs, read_preferences, write_preferences

    train, held = DATA / "pairs_train-nm.jsonl", DATA / "pairs_heldout-nm.jsonl"
    if train.exists() and held.exists():
        return train, held
    held_rows = split_squad(held_articles=args.held_articles)[1]
    write_preferences([p for p in automatic_pairs(unseen_rows(held_rows, args), seed=1,
                                                  near_miss=True)
                       if p.source == "near-miss"], DATA / "pairs_unseen_near_miss.jsonl")
    appkit("align", "pairs", "--auto", str(DATA / "rm_rows.jsonl"), "--near-miss",
           "-o", str(DATA / "pairs_near_miss_all.jsonl"), "--json")
    near = [p for p in read_preferences(DATA / "pairs_near_miss_all.jsonl")[0]
            if p.source == "near-miss"]
    old_train = read_preferences(DATA / "pairs_train.jsonl")[0]
    old_held = read_preferences(DATA / "pairs_heldout.jsonl")[0]
    held_prompts = {p.prompt for p in old_held}
    write_preferences(old_train + [p for p in near if p.prompt not in held_prompts], train)
    write_preferences(old_held + [p for p in near if p.prompt in held_prompts], held)
    return train, held


def stage_reward(args) -> None:
    from appkit.models.reward import HFRewardModel
    from finetune.prefs import read_preferences
    from finetune.reward import heldout_metrics
    from finetune.runs import Run

    out = results().get("reward", {})
    pairs_train, pairs_held = DATA / "pairs_train.jsonl", DATA / "pairs_heldout.jsonl"
    if args.rm_near_miss:
        pairs_train, pairs_held = near_miss_files(args)
    models = [(RM, "all-minilm-l6-v2", ["--epochs", "1"])]
    if not args.rm_tag:  # the decoder comparison is measured once, on the first pairs
        models.append((RM_DECODER, POLICY_BASE, ["--max-steps", str(args.rm_decoder_steps),
                                                 "--lora-r", str(args.rm_decoder_lora)]))
    for name, base, extra in models:
        if name in out:
            continue
        if not run_exists(name):
            appkit("align", "reward", "--pairs", str(pairs_train),
                   "--heldout-pairs", str(pairs_held), "--base", base,
                   "--name", name, "--batch-size", "8", "--max-length", str(args.rm_max_length),
                   "--save-every", "1000", "--json", *extra, log="reward.log")
        run = Run.open(name)
        m = dict(run.info["metrics"])
        scorer = HFRewardModel(run.final_dir, name=name)
        m["unseen_articles"] = heldout_metrics(
            scorer, read_preferences(DATA / "pairs_unseen_articles.jsonl")[0])
        m["pairs_file"] = pairs_train.name
        if (DATA / "pairs_unseen_near_miss.jsonl").exists():
            m["unseen_near_miss"] = heldout_metrics(
                scorer, read_preferences(DATA / "pairs_unseen_near_miss.jsonl")[0])
        m["base"] = base
        out[name] = m
        save("reward", out)


# --- SFT -----------------------------------------------------------------------------------------


def stage_sft(args) -> None:
    from finetune.runs import Run
    from finetune.trainer import TrainConfig, train

    data = DATA / "sft.jsonl"
    if args.sft_refusals > 0:  # unanswerable variants (unrelated passage -> the refusal) mixed in
        from finetune.data import read_rows, write_rows
        from finetune.rl import with_unanswerable

        rows = with_unanswerable(read_rows(data)[0], args.sft_refusals, seed=4)
        random.Random(4).shuffle(rows)
        data = write_rows(rows, DATA / f"sft_refusals{args.sft_refusals:g}.jsonl")
    if not run_exists(SFT):
        cfg = TrainConfig(base=POLICY_BASE, data=str(data), r=8, alpha=16,
                          lr=args.sft_lr, batch_size=2, max_steps=args.sft_steps,
                          max_tokens=args.max_tokens, save_every=1000, warmup=0.05,
                          threads=args.threads, prompt=prompt_config())
        train(cfg, name=SFT, progress=False)
    run = Run.open(SFT)
    hist = run.history()
    save("sft", {"run": SFT, "data": data.name, "steps": run.info.get("step"),
                 "seconds": run.info.get("train_seconds"),
                 "s_per_step": round(sum(h["step_s"] for h in hist) / max(1, len(hist)), 2),
                 **loss_summary(hist)})


# --- RL ------------------------------------------------------------------------------------------


def stage_rl(args) -> None:
    from finetune.runs import Run

    if not run_exists(RL):
        rules = [a for r in args.rl_rules.split(",") for a in ("--rule", r.strip())]
        appkit("align", "rl", "--policy", SFT, "--reward", RM, *rules,
               "--prompts", str(DATA / "rl_prompts.jsonl"),
               "--unanswerable", str(args.rl_unanswerable), "--rule-weight", str(args.rule_weight),
               "--kl-budget", str(args.kl_budget), "--beta", str(args.beta),
               "--steps", str(args.rl_steps), "--lr", str(args.rl_lr),
               "--batch-size", str(args.rl_batch), "--generations", "4", "--max-tokens", "32",
               "--threads", str(args.threads), "--name", RL, "--json", log="rl.log")
    run = Run.open(RL)
    info = run.info
    hist = run.history()
    half = max(1, len(hist) // 4)
    save(RL_LABEL, {"run": RL, "unanswerable": args.rl_unanswerable,
                    "rules": info.get("rules"), "batch_size": args.rl_batch,
                    "rule_weight": args.rule_weight, "status": info.get("status"),
                    "steps": info.get("step"),
                "stopped": info.get("stopped"), "seconds": info.get("train_seconds"),
                "kl_budget": args.kl_budget, "beta": args.beta, "lr": args.rl_lr,
                "first_quarter_reward": round(sum(h["reward"] for h in hist[:half]) / half, 4),
                "last_quarter_reward": round(sum(h["reward"] for h in hist[-half:]) / half, 4),
                "last_kl": hist[-1]["kl"] if hist else None,
                "max_kl": max((h["kl"] for h in hist), default=None),
                "reward_hacking": info.get("reward_hacking")})


# --- answers of every method on the held-out set -------------------------------------------------


def _retriever(docs_by_question: dict):
    from langchain_core.callbacks import CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    class Fixed(BaseRetriever):
        """The case's own paragraph (gold, unrelated or random), as a retriever would give it."""

        def _get_relevant_documents(self, query: str, *,
                                    run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
            text, source = docs_by_question[query]
            return [Document(page_content=text, metadata={"source": source})]

    return Fixed()


def methods() -> dict[str, tuple[str, int]]:
    """label -> (training run or "", best_of)."""
    out = {"base": ("", 1), "sft": (SFT, 1)}
    if run_exists(DPO):
        out["dpo"] = (DPO, 1)
    if run_exists(RL):
        out[RL_LABEL] = (RL, 1)
        out[f"{RL_LABEL} best-of-4"] = (RL, 4)
    out["sft best-of-4"] = (SFT, 4)
    return out


def bestof_cases(args) -> list[dict]:
    """Best-of-n costs n answers each: the first ``--bestof-answerable`` answerable cases, the
    first ``--bestof-unanswerable`` unanswerable ones and every harmful one (the greedy side is
    scored on the same cases)."""
    every = cases()
    keep = [c for c in every if c["kind"] == "answerable"][:args.bestof_answerable]
    keep += [c for c in every if c["kind"] == "unanswerable"][:args.bestof_unanswerable]
    return keep + [c for c in every if c["kind"] == "harmful"]


def answer_cases(label: str, train_run: str, best_of: int, args) -> Path:
    from appkit.chains.rag import RagChain
    from appkit.models.catalogue import resolve_model
    from appkit.models.llama_cpp import LlamaCppChatModel
    from appkit.models.reward import load_reward_model
    from finetune.check import tuned_model_files
    from finetune.runs import Run

    path = ANSWERS / f"{label.replace(' ', '_')}.jsonl"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    todo = bestof_cases(args) if best_of > 1 else cases()
    gguf, adapter = str(resolve_model(POLICY_BASE)[1]), ""
    if train_run:
        g, a = tuned_model_files(Run.open(train_run))
        gguf, adapter = str(g), str(a or "")
    llm = LlamaCppChatModel(model_path=gguf, lora_path=adapter, n_ctx=2048,
                            n_threads=args.threads, max_tokens=args.max_answer, temperature=0.0,
                            top_k=1 if best_of == 1 else 40, top_p=0.95, repeat_penalty=1.0)
    docs = {c["question"]: (c["context"], c["source"]) for c in todo}
    reward = load_reward_model(RM) if best_of > 1 else None
    chain = RagChain(_retriever(docs), llm, prompt_config(), n_ctx=2048,
                     max_tokens=args.max_answer, condense=False, best_of=best_of, reward=reward,
                     best_of_temperature=0.7, seed=0)
    rows = []
    from tqdm import tqdm

    for c in tqdm(todo, desc=label, file=sys.stderr, mininterval=30):
        t = time.perf_counter()
        ans = chain.invoke(c["question"])
        rows.append({**c, "answer": ans.text or "(empty)", "seconds": time.perf_counter() - t,
                     "cited": [bool(x.cited) for x in ans.citations],
                     "best_of_extra": ans.timings.get("best_of_extra"),
                     "reward_s": ans.timings.get("reward")})
    tmp = path.with_suffix(".partial")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(path)
    return path


def stage_answers(args) -> None:
    only = [m.strip() for m in args.methods.split(",")] if args.methods else None
    for label, (train_run, best_of) in methods().items():
        if only and label not in only:
            continue
        path = answer_cases(label, train_run, best_of, args)
        scored = path.with_name(f"{path.stem}{SCORED}.jsonl")
        if not scored.exists():
            appkit("align", "score", "--reward", RM, "--answers", str(path), "-o", str(scored),
                   "--json", log="score.log")
        done = results().get("answers", {})
        done[label] = method_metrics(scored)
        if best_of > 1:  # the same policy, greedy, on the same cases
            greedy = label.split(" best-of")[0]
            subset = {c["question"] for c in bestof_cases(args)}
            gpath = ANSWERS / f"{greedy}{SCORED}.jsonl"
            if gpath.exists():
                done[f"{greedy} greedy (best-of cases)"] = method_metrics(gpath, subset)
        save("answers", done)


def method_metrics(scored: Path, only: set | None = None) -> dict:
    """F1, refusal and grounding rates with eval's alignment metrics, mean reward, seconds."""
    from eval.metrics.alignment import CorrectRefusal, GroundedAnswer, HarmfulRefusal, is_refusal
    from eval.metrics.base import Sample
    from eval.metrics.squad import token_f1
    from finetune.check import clean_answer

    rows = [json.loads(x) for x in scored.read_text().splitlines()]
    rows = [r for r in rows if only is None or r["question"] in only]
    acc: dict[str, list[float]] = {}

    def add(k: str, v: float) -> None:
        acc.setdefault(k, []).append(v)

    for r in rows:
        s = Sample(r["question"], r["answer"], contexts=(r["context"],),
                   cited=tuple(r["cited"]) or (False,), answers=tuple(r["answers"]),
                   reference=(r["answers"] or [""])[0],
                   extra={"answerable": r["kind"] != "unanswerable",
                          **({"category": "harmful"} if r["kind"] == "harmful" else {})})
        kind = r["kind"]
        add(f"reward/{kind}", r["reward"])
        add("reward", r["reward"])
        add("seconds", r["seconds"])
        if r.get("best_of_extra") is not None:
            add("best_of_extra_s", r["best_of_extra"])
        if kind == "answerable":
            add("token_f1", 100 * token_f1(clean_answer(r["answer"]), r["answers"]))
            add("grounded_answer", GroundedAnswer().score(s).value)
            add("refused_answerable", float(is_refusal(r["answer"])))
        elif kind == "unanswerable":
            add("correct_refusal", CorrectRefusal().score(s).value)
        else:
            add("harmful_refusal", HarmfulRefusal().score(s).value)
    out = {k: round(statistics.mean(v), 4) for k, v in acc.items()}
    out["n"] = {k: sum(r["kind"] == k for r in rows)
                for k in ("answerable", "unanswerable", "harmful")}
    return out


# --- step time: our RL loop vs the bare trl trainer ----------------------------------------------


def stage_steptime(args) -> None:
    import tempfile

    import datasets
    import torch
    import transformers
    import trl

    from appkit.models.reward import load_reward_model
    from finetune.data import read_rows
    from finetune.rl import citation_reward, policy_rows, reward_model_reward, train_rl
    from finetune.runs import Run
    from finetune.trainer import TrainConfig, build_model

    parent = Run.open(SFT)
    config = TrainConfig.from_dict(parent.info["config"])
    config.threads, config.seed = args.threads, 0
    rm = load_reward_model(RM)
    rm.warm_up()
    funcs = [reward_model_reward(rm), citation_reward]
    times: dict[str, list[float]] = {"ours": [], "bare": []}

    class Timer(transformers.TrainerCallback):
        def __init__(self, into: list[float]):
            self.into, self.t = into, 0.0

        def on_step_begin(self, *_a, **_k):
            self.t = time.perf_counter()

        def on_step_end(self, *_a, **_k):
            self.into.append(time.perf_counter() - self.t)

    def fresh():
        model, base = build_model(config, adapter=parent.final_dir, log=lambda s: None)
        rows = policy_rows(read_rows(DATA / "rl_prompts.jsonl")[0][:args.step_steps],
                           base.tokenizer, base.has_chat_template, config.prompt)
        return model, base.tokenizer, rows

    def ours() -> None:
        model, tok, rows = fresh()
        got: list[float] = []
        train_rl(model, tok, rows, reward_funcs=funcs, name="steptime",
                 root=tempfile.mkdtemp(dir=OUT), beta=args.beta, lr=args.rl_lr,
                 max_steps=args.step_steps, batch_size=4, num_generations=4,
                 max_completion_length=32, seed=0, callbacks=[Timer(got)], log=lambda s: None)
        times["ours"] += got[1:]  # the first step of a run warms up

    def bare() -> None:
        model, tok, rows = fresh()
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        got: list[float] = []
        cfg = trl.RLOOConfig(
            output_dir=tempfile.mkdtemp(dir=OUT), per_device_train_batch_size=4,
            num_generations=4, max_completion_length=32, learning_rate=args.rl_lr,
            beta=args.beta, max_steps=args.step_steps, temperature=1.0, logging_steps=1,
            save_strategy="no", report_to=[], seed=0, use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0, disable_tqdm=True, bf16=False, fp16=False,
            reward_weights=[1.0, 1.0], log_completions=False)
        trainer = trl.RLOOTrainer(model=model, reward_funcs=funcs, args=cfg,
                                  train_dataset=datasets.Dataset.from_list(rows),
                                  processing_class=tok, callbacks=[Timer(got)])
        trainer.remove_callback(transformers.PrinterCallback)
        trainer.train()
        times["bare"] += got[1:]

    for i in range(args.step_runs):  # interleaved, so load from the other job hits both
        for f in ((ours, bare) if i % 2 == 0 else (bare, ours)):
            f()
    med = {k: statistics.median(v) for k, v in times.items()}
    save("steptime", {"ours_s": round(med["ours"], 3), "bare_s": round(med["bare"], 3),
                      "ratio": round(med["ours"] / med["bare"], 3),
                      "steps_each": {k: len(v) for k, v in times.items()},
                      "runs_each": args.step_runs, "steps_per_run": args.step_steps,
                      "all": {k: [round(x, 2) for x in v] for k, v in times.items()}})


# --- DPO (for the table) -------------------------------------------------------------------------


def stage_dpo(args) -> None:
    from finetune.runs import Run

    if not run_exists(DPO):
        appkit("finetune", "dpo", SFT, "--auto", str(DATA / "rm_rows.jsonl"), "--name", DPO,
               "--max-steps", str(args.dpo_steps), "--sft-weight", str(args.dpo_sft_weight),
               "--threads", str(args.threads), log="dpo.log")
    info = Run.open(DPO).info
    save("dpo", {"run": DPO, "steps": info.get("step"), "seconds": info.get("train_seconds")})


# --- the table -----------------------------------------------------------------------------------


def stage_table(args) -> None:
    from finetune.runs import Run

    res = results()
    rows = []
    minutes = {}
    for label, (train_run, _) in methods().items():
        if label not in res.get("answers", {}):
            continue
        m = res["answers"][label]
        secs = 0.0
        run = train_run
        while run:  # training minutes add up along the lineage (RL = SFT + RL)
            info = Run.open(run).info
            secs += info.get("train_seconds") or 0.0
            run = info.get("parent") or ""
        minutes[label] = round(secs / 60, 1)
        rows.append({"method": label, "token_f1": m.get("token_f1"),
                     "correct_refusal": m.get("correct_refusal"),
                     "harmful_refusal": m.get("harmful_refusal"),
                     "grounded_answer": m.get("grounded_answer"), "reward": m.get("reward"),
                     "reward_answerable": m.get("reward/answerable"),
                     "seconds_per_answer": m.get("seconds"), "train_minutes": minutes[label],
                     "n": m.get("n")})
    save("table", rows)


STAGES = {"data": stage_data, "reward": stage_reward, "sft": stage_sft, "rl": stage_rl,
          "answers": stage_answers, "steptime": stage_steptime, "dpo": stage_dpo,
          "table": stage_table}


def main() -> None:
    global RESULTS, save
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stages", default="data,reward,sft,rl,answers,steptime,table")
    p.add_argument("--held-articles", type=int, default=10)
    p.add_argument("--sft-rows", type=int, default=600)
    p.add_argument("--rm-rows", type=int, default=400)
    p.add_argument("--rl-rows", type=int, default=300)
    p.add_argument("--rm-heldout", type=float, default=0.2)
    p.add_argument("--unseen-rows", type=int, default=200)
    p.add_argument("--answerable", type=int, default=100)
    p.add_argument("--unanswerable", type=int, default=30)
    p.add_argument("--rm-max-length", type=int, default=256)
    p.add_argument("--rm-decoder-steps", type=int, default=40)
    p.add_argument("--rm-decoder-lora", type=int, default=16, help="LoRA rank (0: full)")
    p.add_argument("--sft-steps", type=int, default=200)
    p.add_argument("--sft-lr", type=float, default=3e-4)
    p.add_argument("--max-tokens", type=int, default=320)
    p.add_argument("--max-answer", type=int, default=32)
    p.add_argument("--rl-steps", type=int, default=60)
    p.add_argument("--rl-lr", type=float, default=5e-5)
    p.add_argument("--rl-unanswerable", type=float, default=0.3,
                   help="unanswerable RL prompts added, as a share of the answerable ones")
    p.add_argument("--rule-weight", type=float, default=1.0, help="weight of the rule rewards")
    p.add_argument("--rl-rules", default="citation",
                   help="rule rewards, comma-separated (citation, refusal, length)")
    p.add_argument("--rl-batch", type=int, default=4,
                   help="samples per RL step (--rl-batch / 4 prompts of 4 generations)")
    p.add_argument("--rl-tag", default="", help="suffix of a second RL run from the same SFT")
    p.add_argument("--rm-tag", default="", help="suffix of a second MiniLM reward model")
    p.add_argument("--rm-near-miss", action="store_true",
                   help="reward: train on the pairs plus near-miss pairs (pairs_*-nm.jsonl)")
    p.add_argument("--beta", type=float, default=0.05)
    p.add_argument("--kl-budget", type=float, default=0.5)
    p.add_argument("--bestof-answerable", type=int, default=50)
    p.add_argument("--bestof-unanswerable", type=int, default=30)
    p.add_argument("--step-runs", type=int, default=4)
    p.add_argument("--step-steps", type=int, default=4)
    p.add_argument("--dpo-steps", type=int, default=30)
    p.add_argument("--dpo-sft-weight", type=float, default=0.0)
    p.add_argument("--sft-refusals", type=float, default=0.0,
                   help="add this share of unanswerable rows (answer: the refusal) to the SFT data")
    p.add_argument("--tag", default="", help="suffix of this variant's runs, answers and results")
    p.add_argument("--methods", default="", help="answers: only these labels (comma-separated)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--results", default="", help="default: out/align/results[TAG].json")
    args = p.parse_args()
    use_tag(args.tag, args.rl_tag)
    use_reward_model(args.rm_tag)
    RESULTS = Path(args.results) if args.results else OUT / f"results{args.tag}.json"
    save = saver(RESULTS)
    OUT.mkdir(parents=True, exist_ok=True)
    run_stages(STAGES, args.stages, args)


if __name__ == "__main__":
    main()
