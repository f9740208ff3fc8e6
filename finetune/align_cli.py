"""``appkit align``: preference pairs, reward models and scoring (entry point
``appkit.commands: align``). Nothing heavy is imported until a command runs.

::

    appkit align pairs --feedback --auto finetune-data/train.jsonl --harmless -o prefs.jsonl
    appkit align reward --pairs prefs.jsonl --name notes-rm        # held-out pairwise accuracy
    appkit align score --reward notes-rm --answers answers.jsonl   # one reward per answer
    appkit align rl --policy notes-qa --reward notes-rm --rule citation --prompts train.jsonl
    appkit align rl --resume notes-qa-rl                           # after a Ctrl-C
    # then in appkit.toml: [chat] best_of = 4, reward_model = "notes-rm"
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from appkit.errors import AppkitError


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _collect(args: argparse.Namespace) -> tuple[list[Any], list[str]]:
    from finetune.prefs import automatic_pairs, harmless_pairs, read_preferences

    pairs: list[Any] = []
    problems: list[str] = []
    on_error = "skip" if args.skip_bad_pairs else "raise"
    for path in args.pairs or []:
        got, bad = read_preferences(path, on_error=on_error)
        pairs += got
        problems += bad
    if getattr(args, "feedback", False):
        from appkit.config import find_profile
        from finetune.prefs import feedback_preferences

        pairs += feedback_preferences(find_profile(args.profile, create=False).data_dir)
    for path in getattr(args, "auto", None) or []:
        from finetune.data import read_rows

        pairs += automatic_pairs(read_rows(path)[0], seed=args.seed,
                                 near_miss=getattr(args, "near_miss", False))
    if getattr(args, "harmless", False):
        pairs += harmless_pairs()
    for p in problems:
        print(f"skipped: {p}", file=sys.stderr)
    return pairs, problems


def _counts(pairs: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for p in pairs:
        out[p.source] = out.get(p.source, 0) + 1
    return dict(sorted(out.items()))


def cmd_pairs(args: argparse.Namespace) -> int:
    from finetune.prefs import write_preferences

    pairs, problems = _collect(args)
    if not pairs:
        raise AppkitError("no preference pairs: give --pairs FILE, --feedback, --auto DATA or "
                          "--harmless")
    write_preferences(pairs, args.out)
    summary = {"pairs": len(pairs), "sources": _counts(pairs), "skipped": len(problems),
               "file": args.out}
    if args.json:
        _print_json(summary)
    else:
        print(f"wrote {len(pairs)} pairs to {args.out}: "
              + ", ".join(f"{k} {n}" for k, n in summary["sources"].items()))
    return 1 if problems else 0


def cmd_reward(args: argparse.Namespace) -> int:
    from finetune.prefs import read_preferences, split_preferences
    from finetune.reward import check_lora, train_reward

    check_lora(args.lora_r, args.lora_alpha)  # before reading pairs or loading a base
    problems: list[str] = []
    if args.resume:
        train, held = [], []
    else:
        pairs, problems = _collect(args)
        if not pairs:
            raise AppkitError("no preference pairs: give --pairs FILE (or --auto, --harmless)")
        if args.heldout_pairs:
            train = pairs
            held, bad = read_preferences(args.heldout_pairs,
                                         on_error="skip" if args.skip_bad_pairs else "raise")
            problems += bad
            overlap = {p.prompt for p in train} & {p.prompt for p in held}
            if overlap:
                raise AppkitError(f"{len(overlap)} prompt(s) of {args.heldout_pairs} are also in "
                                  "the training pairs; held-out pairs must be unseen")
        else:
            train, held = split_preferences(pairs, args.heldout, seed=args.seed)
    result = train_reward(
        train, held, base=args.base, name=args.name, lr=args.lr, batch_size=args.batch_size,
        epochs=args.epochs, max_steps=args.max_steps, max_length=args.max_length,
        save_every=args.save_every, seed=args.seed, threads=args.threads,
        lora_r=args.lora_r, lora_alpha=args.lora_alpha, resume=args.resume or None)
    if result.interrupted:
        print(f"appkit: interrupted; run {result.run.name} kept its last checkpoint, nothing "
              "was registered", file=sys.stderr)
        return 130
    summary = {"run": result.run.name, "model": result.spec.name if result.spec else None,
               "path": str(result.run.final_dir), **result.metrics}
    if args.json:
        _print_json(summary)
    else:
        per_source = ", ".join(f"{k.split('/', 1)[1]} {v}" for k, v in result.metrics.items()
                               if k.startswith("accuracy/"))
        print(f"reward model {summary['model']}: held-out pairwise accuracy "
              f"{result.metrics.get('accuracy')} on {result.metrics.get('pairs')} pairs"
              + (f" ({per_source})" if per_source else "")
              + f"; {result.metrics.get('train_seconds')} s training, "
              f"{result.metrics.get('pairs_per_s')} pairs/s scoring")
        print(f"use it: [chat] best_of = 4, reward_model = \"{summary['model']}\"")
    return 1 if problems else 0


def read_answers(path: str) -> list[tuple[int, dict[str, Any], str, str]]:
    """Rows of an answers file as ``(line, row, reward prompt, answer)``.

    A row has ``answer`` and either ``prompt`` or ``question`` (with optional ``contexts``, a list
    of passages, or ``context``).

    Raises:
        AppkitError: naming the file and line of a row without an answer or a question.
    """
    from appkit.jsonl import read_jsonl
    from appkit.models.reward import reward_prompt

    out = []
    for no, row in read_jsonl(path, "the answers file"):
        answer = row.get("answer")
        if not isinstance(answer, str) or not answer.strip():
            raise AppkitError(f"{path}, line {no}: 'answer' is missing or empty")
        prompt = row.get("prompt")
        if not (isinstance(prompt, str) and prompt.strip()):
            question = row.get("question")
            if not isinstance(question, str) or not question.strip():
                raise AppkitError(f"{path}, line {no}: give 'prompt' or 'question'")
            contexts = row.get("contexts") or ([row["context"]] if row.get("context") else [])
            contexts = [c if isinstance(c, str) else str(c.get("text", "")) for c in contexts]
            prompt = reward_prompt(question, contexts)
        out.append((no, row, prompt, answer))
    return out


def cmd_score(args: argparse.Namespace) -> int:
    from appkit.models.reward import load_reward_model

    rows = read_answers(args.answers)
    if not rows:
        raise AppkitError(f"{args.answers} has no answers")
    rm = load_reward_model(args.reward, batch_size=args.batch_size)
    scores = rm.score_pairs([(prompt, answer) for _, _, prompt, answer in rows])
    scored = [{**row, "reward": round(s, 4)} for (_, row, _, _), s in zip(rows, scores)]
    if args.out:
        from pathlib import Path

        Path(args.out).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n"
                                          for r in scored), encoding="utf-8")
    mean = sum(scores) / len(scores)
    if args.json:
        _print_json({"reward_model": rm.name, "answers": len(scores), "mean": round(mean, 4),
                     "rows": scored if not args.out else None, "file": args.out or None})
    else:
        if not args.out:
            for r in scored:
                print(f"{r['reward']:+.3f}  {r['answer'][:100]}")
        print(f"{len(scores)} answers, mean reward {mean:+.3f} ({rm.name})"
              + (f"; written to {args.out}" if args.out else ""))
    return 0


def _rl_rewards(reward: str, rules: list[str], rule_weight: float) -> tuple[list[Any], list[float]]:
    from appkit.models.reward import load_reward_model
    from finetune.rl import (
        answer_reward, citation_reward, length_penalty, refusal_penalty, reward_model_reward)

    funcs, weights = [], []
    if reward:
        funcs.append(reward_model_reward(load_reward_model(reward)))
        weights.append(1.0)
    known = {"citation": citation_reward, "refusal": refusal_penalty, "answer": answer_reward,
             "length": length_penalty}
    for rule in rules:
        name, _, weight = rule.partition(":")
        if name not in known:
            raise AppkitError(f"unknown rule reward '{name}'; use {', '.join(known)}")
        try:
            w = float(weight) if weight else rule_weight
        except ValueError:
            raise AppkitError(f"--rule {rule}: the weight after ':' must be a number") from None
        funcs.append(known[name])
        weights.append(w)
    if not funcs:
        raise AppkitError("no reward: give --reward RM and/or --rule "
                          "citation/refusal/answer/length")
    return funcs, weights


def _lora_parent(name: str) -> Any:
    from finetune.runs import Run

    parent = Run.open(name)
    info = parent.info
    if info.get("method") != "lora" or not parent.final_dir.exists():
        raise AppkitError(f"RL continues a finished LoRA run; '{parent.name}' is "
                          f"{info.get('method')} and {info.get('status')}")
    return parent


def cmd_rl(args: argparse.Namespace) -> int:
    from finetune.data import read_rows
    from finetune.rl import policy_rows, train_rl, with_unanswerable
    from finetune.runs import loss_curve
    from finetune.trainer import TrainConfig, build_model
    from finetune.trl_loop import resumable_run

    if args.resume:
        if args.policy or args.prompts:
            raise AppkitError("--resume continues an RL run with its own policy and prompts; "
                              "give no --policy or --prompts with it")
        run = resumable_run(args.resume, "RL", "rl")
        saved = run.info
        if "rules" not in saved or not saved.get("parent"):
            raise AppkitError(f"RL run '{run.name}' does not record its parent and rewards; "
                              "start a new run")
        parent = _lora_parent(saved["parent"])
        funcs, weights = _rl_rewards(saved.get("reward_model") or "", saved["rules"],
                                     saved.get("rule_weight", 1.0))
        config = TrainConfig.from_dict(parent.info["config"])
        config.threads, config.seed = args.threads, saved["rl"].get("seed", 0)
        model, base = build_model(config, adapter=parent.final_dir)
        result = train_rl(model, base.tokenizer, [], reward_funcs=funcs, reward_weights=weights,
                          resume=run, save_every=args.save_every, max_minutes=args.max_minutes)
    else:
        if not args.policy or not args.prompts:
            raise AppkitError("give --policy RUN and --prompts FILE (or --resume RL_RUN)")
        parent = _lora_parent(args.policy)
        info = parent.info
        funcs, weights = _rl_rewards(args.reward, args.rule or [], args.rule_weight)
        rows = read_rows(args.prompts)[0]
        if args.max_prompts:
            rows = rows[:args.max_prompts]
        rows = with_unanswerable(rows, args.unanswerable, seed=args.seed)
        config = TrainConfig.from_dict(info["config"])
        config.threads, config.seed = args.threads, args.seed
        model, base = build_model(config, adapter=parent.final_dir)
        chat = base.has_chat_template
        result = train_rl(
            model, base.tokenizer, policy_rows(rows, base.tokenizer, chat, config.prompt),
            reward_funcs=funcs, reward_weights=weights, name=args.name or f"{parent.name}-rl",
            info={"base": info["base"], "base_gguf": info.get("base_gguf"),
                  "parent": parent.name, "data": info.get("data"),
                  "data_hash": info.get("data_hash"), "prompts_file": args.prompts,
                  "reward_model": args.reward, "rules": list(args.rule or []),
                  "rule_weight": args.rule_weight, "hf_dir": info.get("hf_dir"),
                  "chat_template": chat, "config": info["config"]},
            beta=args.beta, kl_budget=args.kl_budget, lr=args.lr, max_steps=args.steps,
            batch_size=args.batch_size, num_generations=args.generations,
            max_completion_length=args.max_tokens, seed=args.seed, save_every=args.save_every,
            max_minutes=args.max_minutes)
    if result.stopped == "interrupted":
        print(f"appkit: interrupted at step {result.steps}; run {result.run.name} kept its last "
              f"checkpoint; continue with: appkit align rl --resume {result.run.name}",
              file=sys.stderr)
        return 130
    summary = {"run": result.run.name, "steps": result.steps, "stopped": result.stopped,
               "kept_step": result.kept_step,
               "first": result.history[0] if result.history else None,
               "last": result.history[-1] if result.history else None,
               "reward_hacking": result.hacking}
    if args.json:
        _print_json(summary)
    else:
        print("reward per step:")
        print(loss_curve([{"step": h["step"], "loss": h["reward"]} for h in result.history]))
        if result.history:
            first, last = result.history[0], result.history[-1]
            print(f"reward {first['reward']:.3f} -> {last['reward']:.3f}, KL {last['kl']:.4f}"
                  + (f"; stopped: {result.stopped}" if result.stopped else "")
                  + (f"; saved the policy of step {result.kept_step}, the last within the "
                     "budget" if result.kept_step is not None else ""))
        corr = result.hacking.get("length_correlation")
        print(f"reward-hacking check: correlation of reward with length {corr}; top samples:")
        for s in result.hacking.get("top", [])[:3]:
            print(f"  {s['reward']:+.3f}  {s['text'][:100]!r}")
        print(f"next: appkit finetune check {result.run.name}; "
              f"appkit finetune export {result.run.name}")
    return 0


TABLE_METRICS = ("token_f1", "correct_refusal", "harmful_refusal", "grounded_answer",
                 "reward_score")


def method_table(entries: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """One row per method: eval-run means of :data:`TABLE_METRICS` and training minutes.

    Args:
        entries: ``(label, eval run folder, training run name or "")``.
    """
    from eval.runner import load_run
    from finetune.runs import Run

    rows = []
    for label, run_dir, train in entries:
        summary, _ = load_run(run_dir)
        row: dict[str, Any] = {"method": label}
        for m in TABLE_METRICS:
            row[m] = (summary.get("metrics", {}).get(m) or {}).get("mean")
        seconds = Run.open(train).info.get("train_seconds") if train else None
        row["train_minutes"] = round(seconds / 60, 1) if seconds is not None else None
        rows.append(row)
    return rows


def cmd_table(args: argparse.Namespace) -> int:
    entries = []
    for item in args.runs:
        label, sep, rest = item.partition("=")
        if not sep or not rest:
            raise AppkitError(f"expected LABEL=EVAL_RUN[:TRAIN_RUN], got '{item}'")
        run_dir, _, train = rest.partition(":")
        entries.append((label, run_dir, train))
    rows = method_table(entries)
    if args.json:
        _print_json(rows)
        return 0
    cols = ["method", *TABLE_METRICS, "train_minutes"]
    cells = [[("-" if r[c] is None else f"{r[c]:.3f}" if isinstance(r[c], float) else str(r[c]))
              for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for x in cells:
        print("  ".join(v.ljust(w) for v, w in zip(x, widths)))
    return 0


def _source_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pairs", action="append", metavar="FILE",
                   help="preference JSONL: prompt, chosen, rejected, source (repeatable)")
    p.add_argument("--auto", action="append", metavar="DATA",
                   help="QA rows with passages: grounded-vs-unsupported and refusal pairs")
    p.add_argument("--near-miss", action="store_true",
                   help="with --auto: also prefer each answer to another question's answer "
                        "from the same passage (harder negatives)")
    p.add_argument("--harmless", action="store_true",
                   help="add the shipped harmlessness set (requests to decline)")
    p.add_argument("--skip-bad-pairs", action="store_true",
                   help="report malformed pairs and go on (default: stop at the first)")
    p.add_argument("--seed", type=int, default=0)


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``align`` and its actions to the ``appkit`` command line."""
    a = subparsers.add_parser("align", help="preference pairs, reward models, best-of-n")
    asub = a.add_subparsers(dest="action", metavar="ACTION")

    p = asub.add_parser("pairs", parents=[common], help="write preference pairs (JSONL)")
    _source_args(p)
    p.add_argument("--feedback", action="store_true",
                   help="pairs from the app's thumbs and corrections (the profile's store)")
    p.add_argument("--out", "-o", required=True, help="pairs file to write")
    p.set_defaults(func=cmd_pairs)

    p = asub.add_parser("reward", parents=[common],
                        help="train a reward model (trl RewardTrainer) and register it")
    _source_args(p)
    p.add_argument("--feedback", action="store_true", help="add pairs from the app's feedback")
    p.add_argument("--heldout-pairs", metavar="FILE",
                   help="held-out pairs (default: split --heldout of the pairs by prompt)")
    p.add_argument("--heldout", type=float, default=0.2, help="share of prompts held out")
    p.add_argument("--base", default="all-minilm-l6-v2",
                   help="all-minilm-l6-v2 (encoder), smollm2-135m (decoder) or a folder")
    p.add_argument("--name", default="", help="run and catalogue name (default: BASE-reward)")
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=0)
    p.add_argument("--max-length", type=int, default=256, help="tokens of prompt + answer")
    p.add_argument("--lora-r", type=int, default=0, metavar="N",
                   help="LoRA on the base (decoder bases: much faster than a full fine-tune; "
                        "0: full)")
    p.add_argument("--lora-alpha", type=int, default=0, metavar="N",
                   help="LoRA alpha (0: twice --lora-r)")
    p.add_argument("--save-every", type=int, default=50, help="checkpoint every N steps")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--resume", default="", metavar="RUN",
                   help="continue an interrupted run (with its own settings, LoRA included)")
    p.set_defaults(func=cmd_reward)

    p = asub.add_parser("rl", parents=[common],
                        help="RL (trl RLOO) on a LoRA run: reward model + rule rewards, KL budget")
    p.add_argument("--policy", default="", help="the finished LoRA run to continue")
    p.add_argument("--prompts", default="", help="QA rows (finetune prepare's train.jsonl)")
    p.add_argument("--reward", default="", help="reward model (catalogue name or folder)")
    p.add_argument("--rule", action="append", metavar="RULE[:WEIGHT]",
                   help="rule reward (repeatable): citation (present and correct), refusal (-1 "
                        "for refusing an answerable question), answer (token F1 with the "
                        "reference answer), length (penalty); ':2' weighs "
                        "one rule 2 instead of --rule-weight")
    p.add_argument("--rule-weight", type=float, default=1.0, help="weight of each rule")
    p.add_argument("--beta", type=float, default=0.05, help="KL penalty weight")
    p.add_argument("--kl-budget", type=float, default=0.5, help="stop when KL exceeds (0: never)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--generations", type=int, default=4, help="samples per prompt")
    p.add_argument("--max-tokens", type=int, default=64, help="longest sampled answer")
    p.add_argument("--max-prompts", type=int, default=0)
    p.add_argument("--unanswerable", type=float, default=0.0, metavar="SHARE",
                   help="add this share of unanswerable variants (an unrelated passage, the "
                        "refusal rewarded)")
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--name", default="", help="new run name (default: POLICY-rl)")
    p.add_argument("--save-every", type=int, default=10, help="checkpoint every N steps")
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="end training (as a finished run) after this long (0: no limit)")
    p.add_argument("--resume", default="", metavar="RUN",
                   help="continue an interrupted RL run (its own policy, prompts, rewards and "
                        "settings)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_rl)

    p = asub.add_parser("table", parents=[common],
                        help="methods side by side: F1, refusals, grounding, reward, minutes")
    p.add_argument("runs", nargs="+", metavar="LABEL=EVAL_RUN[:TRAIN_RUN]",
                   help="an 'appkit eval run' folder per method, with its training run if any")
    p.set_defaults(func=cmd_table)

    p = asub.add_parser("score", parents=[common], help="score an answers file with a reward model")
    p.add_argument("--reward", required=True, help="catalogue name or folder of the reward model")
    p.add_argument("--answers", required=True,
                   help="JSONL with answer and prompt (or question + contexts)")
    p.add_argument("--out", "-o", default="", help="write the rows with their reward here")
    p.add_argument("--batch-size", type=int, default=16)
    p.set_defaults(func=cmd_score)
    a.set_defaults(func=lambda args: (a.print_help(), 0)[1])
