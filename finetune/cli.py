"""``appkit finetune``: prepare data, train (LoRA, full, DPO), check, export (entry point
``appkit.commands: finetune``). Nothing heavy is imported until a command runs.

The loop::

    appkit finetune prepare --task qa --from eval-set.jsonl     # train.jsonl + heldout.jsonl
    appkit finetune lora --base gemma3-270m --data finetune-data/train.jsonl --name my-run
    appkit finetune ia3 | prompt-tuning | prefix-tuning | full …  # the other methods
    appkit finetune check my-run                                # before/after + forgetting
    appkit finetune export my-run --quant q8_0                  # registers my-run-q8_0
    appkit models                                               # lists it; profiles can name it

Making models small (issue 11)::

    appkit finetune distill --teacher qwen2.5-coder-0.5b --student smollm2-135m --data p.jsonl
    appkit finetune prune --model smollm2-135m --data train.jsonl --ratio 0.3 --name small
    appkit finetune prune --model small --data train.jsonl --ratio 0.3 --what vocab \
        --keep-tokens-of docs/ --name smaller                    # drop the unused tokens too
    appkit finetune export small --quant q4_k_m                  # the pruned model as a GGUF
    appkit finetune pretrain --data notes/ --out tiny-model/     # or --continue-from smollm2-135m
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from appkit.errors import AppkitError
from finetune.peft_methods import PEFT_METHODS  # light: peft itself is imported on use

METHODS = (*PEFT_METHODS, "full")


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _progress_log(args: argparse.Namespace) -> Any:
    """Where progress lines go: stderr under ``--json`` (stdout carries the JSON), else stdout."""
    return (lambda s: print(s, file=sys.stderr)) if args.json else print


def _profile(args: argparse.Namespace) -> Any:
    from appkit.config import find_profile

    return find_profile(getattr(args, "profile", None), create=False)


def _weights(values: list[str] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for v in values or []:
        task, _, w = v.partition("=")
        try:
            out[task.strip()] = float(w)
        except ValueError:
            raise AppkitError(f"--weight expects TASK=NUMBER, got '{v}'") from None
    return out


# --- prepare ------------------------------------------------------------------------------------


def cmd_prepare(args: argparse.Namespace) -> int:
    from finetune.data import (
        DataError, Example, data_hash, from_squad, mix, read_rows, split_heldout, write_rows)

    rows: list[Example] = []
    problems: list[str] = []
    on_error = "skip" if args.skip_bad_rows else "raise"
    for path in args.sources or []:
        got, bad = read_rows(path, on_error=on_error)
        if args.task:
            got = [Example(**{**r.__dict__, "task": r.task if r.task != "qa" else args.task})
                   for r in got]
        rows += got
        problems += bad
    for path in args.squad or []:
        rows += from_squad(path)
    if args.synthetic:
        from appkit.app import App
        from finetune.data import synthetic_rows

        app = App(_profile(args))
        got = app.store.get()
        chunks = list(zip((m.get("source", "") for m in got["metadatas"]), got["documents"]))
        if not chunks:
            raise AppkitError("no ingested chunks for synthetic questions; run 'appkit ingest' first")
        rows += synthetic_rows(chunks, app.chat_model, limit=args.synthetic)
    for p in problems:
        print(f"skipped: {p}", file=sys.stderr)
    if not rows:
        raise DataError("no rows: give --from FILE, --squad FILE or --synthetic N")
    if args.max_rows and len(rows) > args.max_rows:
        import random

        rows = random.Random(args.seed).sample(rows, args.max_rows)
    source = ", ".join([*(args.sources or []), *(args.squad or [])]) or "the synthetic rows"
    train, held = split_heldout(rows, args.heldout, seed=args.seed, min_train=args.min_train,
                                source=source)
    weights = _weights(args.weight)
    if weights or len({r.task for r in train}) > 1:
        train = mix(train, weights, seed=args.seed)
    out = Path(args.out)
    write_rows(train, out / "train.jsonl")
    write_rows(held, out / "heldout.jsonl")
    tasks: dict[str, int] = {}
    for r in train:
        tasks[r.task] = tasks.get(r.task, 0) + 1
    summary = {"train": len(train), "heldout": len(held), "skipped": len(problems),
               "tasks": tasks, "data_hash": data_hash(train),
               "train_file": str(out / "train.jsonl"), "heldout_file": str(out / "heldout.jsonl")}
    (out / "prepare.json").write_text(json.dumps(summary, indent=2))
    if args.json:
        _print_json(summary)
    else:
        print(f"wrote {summary['train_file']} ({len(train)} rows) and "
              f"{summary['heldout_file']} ({len(held)} held out); tasks: "
              + ", ".join(f"{t} {n}" for t, n in sorted(tasks.items())))
    return 1 if problems else 0


# --- train --------------------------------------------------------------------------------------


def _train_config(args: argparse.Namespace, method: str, profile: Any) -> Any:
    from finetune.peft_methods import DEFAULT_LR
    from finetune.trainer import LORA_TARGETS, TrainConfig

    if not args.base or not args.data:
        raise AppkitError("give --base MODEL and --data FILE (or --resume RUN)")
    ft = profile.finetune
    return TrainConfig(
        base=args.base, data=args.data, method=method, r=args.r or ft.lora_r, alpha=args.alpha,
        dropout=args.dropout, targets=tuple(args.targets.split(",")) if args.targets else LORA_TARGETS,
        virtual_tokens=args.virtual_tokens or ft.virtual_tokens,
        lr=args.lr if args.lr is not None else DEFAULT_LR[method],
        batch_size=args.batch_size, grad_accum=args.grad_accum, epochs=args.epochs,
        max_steps=args.max_steps, max_minutes=args.max_minutes, max_tokens=args.max_tokens,
        save_every=args.save_every, seed=args.seed, threads=args.threads, prompt=profile.prompt,
    )


def cmd_train(args: argparse.Namespace) -> int:
    from finetune.runs import loss_curve
    from finetune.trainer import train

    if args.command_name == "train":
        method = getattr(args, "method", None) or _profile(args).finetune.method
    else:
        method = args.command_name
    config = None if args.resume else _train_config(args, method, _profile(args))
    result = train(config, name=args.name, resume=args.resume)
    history = result.run.history()
    if args.json:
        _print_json({"run": result.run.name, "status": result.status, "step": result.step,
                     "total_steps": result.total_steps, "last_loss": result.last_loss,
                     "path": str(result.run.path)})
        return 1 if result.status == "interrupted" else 0
    print(loss_curve(history))
    print(f"run {result.run.name}: {result.status} at step {result.step}/{result.total_steps}, "
          f"last loss {result.last_loss if result.last_loss is None else round(result.last_loss, 4)}"
          f", {result.seconds:.0f}s; folder {result.run.path}")
    if result.status == "interrupted":
        print(f"continue with: appkit finetune {args.command_name} --resume {result.run.name}")
        return 1
    print(f"next: appkit finetune check {result.run.name}; "
          f"appkit finetune export {result.run.name} --quant q8_0 (or --mode lora)")
    return 0


# --- dpo ----------------------------------------------------------------------------------------


def _collect_pairs(args: argparse.Namespace) -> list[Any]:
    from finetune.data import read_rows
    from finetune.dpo import auto_pairs, feedback_pairs, read_pairs

    pairs = []
    for path in args.pairs or []:
        pairs += read_pairs(path)
    if args.feedback:
        pairs += feedback_pairs(_profile(args).data_dir)
    for path in args.auto or []:
        pairs += auto_pairs(read_rows(path)[0], seed=args.seed)
    if not pairs:
        raise AppkitError("no preference pairs: give --pairs FILE, --feedback or --auto DATA")
    return pairs


def cmd_pairs(args: argparse.Namespace) -> int:
    from finetune.dpo import write_pairs

    pairs = _collect_pairs(args)
    write_pairs(pairs, args.out)
    kinds: dict[str, int] = {}
    for p in pairs:
        kinds[p.kind] = kinds.get(p.kind, 0) + 1
    print(f"wrote {len(pairs)} pairs to {args.out}: "
          + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())))
    return 0


def cmd_dpo(args: argparse.Namespace) -> int:
    from finetune.dpo import train_dpo
    from finetune.runs import loss_curve

    if args.resume:
        if args.run or args.pairs or args.feedback or args.auto:
            raise AppkitError("--resume continues a DPO run with its own parent and pairs; give "
                              "no RUN, --pairs, --feedback or --auto with it")
        pairs: list[Any] = []
    else:
        if not args.run:
            raise AppkitError("give the LoRA run to continue (appkit finetune dpo RUN ...) or "
                              "--resume DPO_RUN")
        pairs = _collect_pairs(args)
        if args.max_pairs and len(pairs) > args.max_pairs:
            import random

            pairs = random.Random(args.seed).sample(pairs, args.max_pairs)
    run = train_dpo(args.run or None, pairs, name=args.name, beta=args.beta, lr=args.lr,
                    batch_size=args.batch_size, max_steps=args.max_steps, epochs=args.epochs,
                    threads=args.threads, seed=args.seed, sft_weight=args.sft_weight,
                    save_every=args.save_every, max_minutes=args.max_minutes,
                    resume=args.resume or None)
    info = run.info
    if info.get("status") == "interrupted":
        print(f"appkit: interrupted at step {info.get('step')}; run {run.name} kept its last "
              f"checkpoint; continue with: appkit finetune dpo --resume {run.name}",
              file=sys.stderr)
        return 130
    print(loss_curve(run.history()))
    stopped = f" (stopped: {info['stopped']})" if info.get("stopped") else ""
    print(f"run {run.name}: DPO on {info.get('pairs')} pairs{stopped}; "
          f"next: appkit finetune check {run.name}")
    return 0


# --- pretrain -----------------------------------------------------------------------------------


def cmd_pretrain(args: argparse.Namespace) -> int:
    from finetune.pretrain import PretrainConfig, continue_pretraining, model_folder, pretrain

    config = PretrainConfig(
        vocab_size=args.vocab_size, layers=args.layers, hidden=args.hidden, heads=args.heads,
        block_size=args.block_size, steps=args.steps, minutes=args.minutes,
        eval_every=args.eval_every, batch_size=args.batch_size, lr=args.lr, heldout=args.heldout,
        seed=args.seed, lora_r=args.r, threads=args.threads)
    log = _progress_log(args)
    if args.continue_from:
        base = model_folder(args.continue_from, log=log)
        result = continue_pretraining(base, args.data, args.out, config, log=log)
    else:
        result = pretrain(args.data, args.out, config, log=log)
    if args.json:
        _print_json(result.to_dict())
        return 0
    print(f"{'step':>6} {'train loss':>10} {'held-out ppl':>12} {'bits/char':>9} {'seconds':>8}")
    for r in result.curve:
        loss = "" if r["train_loss"] is None else f"{r['train_loss']:.4f}"
        print(f"{r['step']:>6} {loss:>10} {r['heldout_ppl']:>12.3f} {r['heldout_bpc']:>9.4f} "
              f"{r['seconds']:>8.1f}")
    print(f"{result.mode}: held-out perplexity {result.initial.ppl:.2f} -> "
          f"{result.heldout.ppl:.2f} "
          f"({result.heldout.bits_per_char:.3f} bits/char) after {result.steps} steps, "
          f"{result.seconds / 60:.1f} min; saved in {result.out} (curve.json)")
    return 0


# --- distill ------------------------------------------------------------------------------------


def cmd_distill(args: argparse.Namespace) -> int:
    from finetune.distill import DistillConfig, distill
    from finetune.runs import loss_curve

    profile = _profile(args)
    config = DistillConfig(
        teacher=args.teacher, student=args.student, data=args.data, mode=args.mode,
        method=args.method, temperature=args.temperature, beta=args.beta,
        max_new_tokens=args.max_new_tokens, teacher_answers=args.teacher_answers,
        keep=args.keep, lr=args.lr or 0.0, batch_size=args.batch_size,
        grad_accum=args.grad_accum, epochs=args.epochs, max_steps=args.steps,
        max_minutes=args.max_minutes, max_tokens=args.max_tokens, save_every=args.save_every,
        seed=args.seed, threads=args.threads, prompt=profile.prompt)
    log = _progress_log(args)
    result = distill(config, name=args.name, profile=profile, log=log, progress=not args.json)
    model = result.model.name if result.model is not None else None
    if args.json:
        _print_json({"run": result.run.name, "mode": result.mode, "status": result.status,
                     "step": result.step, "total_steps": result.total_steps,
                     "last_loss": result.last_loss, "model": model,
                     "model_path": result.model.local_path if result.model is not None else None,
                     "path": str(result.run.path), "seconds": round(result.seconds, 1)})
        return 1 if result.status == "interrupted" else 0
    print(loss_curve(result.run.history()))
    print(f"run {result.run.name}: {result.mode}-level distillation {result.status} at step "
          f"{result.step}/{result.total_steps}, last loss "
          f"{result.last_loss if result.last_loss is None else round(result.last_loss, 4)}, "
          f"{result.seconds:.0f}s; folder {result.run.path}")
    if model is None:
        return 1
    print(f"registered {model} (transformers); use it: set chat.model = \"{model}\"")
    return 0


# --- prune --------------------------------------------------------------------------------------


def cmd_prune(args: argparse.Namespace) -> int:
    from finetune.prune import PruneConfig, PruneError, prune

    profile = _profile(args)
    if args.refit and args.what in ("layers", "vocab"):
        raise PruneError(f"--refit re-solves the weights that read removed heads or MLP "
                         f"channels; removed {args.what} have none: drop --refit or prune "
                         "--what mlp/heads")
    config = PruneConfig(
        model=args.model, data=args.data, ratio=args.ratio, what=args.what,
        samples=args.samples, batch_size=args.batch_size, max_tokens=args.max_tokens,
        recover_steps=args.recover_steps, refit=args.refit is not False,
        keep_tokens_of=args.keep_tokens_of, teacher=args.teacher,
        distill_on=args.distill_on, answer_weight=args.answer_weight,
        compare_unpruned=args.compare_unpruned, lr=args.lr, seed=args.seed,
        threads=args.threads, prompt=profile.prompt)
    log = _progress_log(args)
    result = prune(config, name=args.name, log=log, progress=not args.json)
    r = result.report
    if args.json:
        _print_json({**r.to_dict(), "model": result.model.name, "model_path": str(result.folder),
                     "run": result.run.name if result.run is not None else None,
                     "unpruned": result.unpruned.name if result.unpruned is not None else None,
                     "seconds": round(result.seconds, 1)})
        return 0
    print(f"{r.what}: {r.params_before:,} -> {r.params_after:,} parameters "
          f"({r.reduction:.1%} fewer); loss {r.loss_before:.3f} -> {r.loss_pruned:.3f} pruned"
          + (f" -> {r.loss_after:.3f} after {config.recover_steps} recovery steps"
             if config.recover_steps else ""))
    if r.magnitude:
        m = r.magnitude
        print(f"for comparison, magnitude pruning at {m['ratio']}: {m['zeroed']:,} weights zeroed, "
              f"loss {m['loss']:.3f}, still {m['params']:,} parameters ({m['note']})")
    print(f"registered {result.model.name} (transformers) at {result.folder}; use it: set "
          f"chat.model = \"{result.model.name}\"; for llama.cpp: appkit finetune export "
          f"{result.model.name} --quant q4_k_m")
    if result.unpruned is not None:
        print(f"registered {result.unpruned.name}: the unpruned model after the same recovery "
              f"(loss {r.loss_unpruned:.3f}); score both on held-out questions (chat.model "
              f"= each, then appkit eval run) before you ship the pruned one")
    return 0


# --- check, export, runs ------------------------------------------------------------------------


def cmd_check(args: argparse.Namespace) -> int:
    from finetune.check import check_run

    profile = _profile(args)
    ft = profile.finetune
    retain = args.retain if args.retain is not None else (
        str(profile.resolve(ft.retain_set)) if ft.retain_set else "")
    eval_set = args.eval or (str(profile.resolve(ft.eval_set)) if ft.eval_set else None)
    threshold = args.threshold if args.threshold is not None else ft.forgetting_threshold
    report = check_run(args.run, eval_set=eval_set, retain_set=retain or None,
                       threshold=threshold, limit=args.limit, max_tokens=args.max_tokens)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(report.render())
    return 1 if report.warnings else 0


def cmd_export(args: argparse.Namespace) -> int:
    from finetune.export import export_run

    quants = [q.strip().lower() for q in args.quant.split(",") if q.strip()]
    result = export_run(args.run, quants=quants, mode=args.mode, name=args.name,
                        log=_progress_log(args))
    if args.json:
        _print_json({"models": [m.name for m in result.models], "folder": str(result.folder),
                     "files": {k: str(v) for k, v in result.files.items()},
                     "seconds": round(result.seconds, 1)})
        return 0
    for m in result.models:
        print(f"registered {m.name}: {m.lineage.get('lora_path') or m.local_path} "
              f"({m.size / 1e6:.0f} MB)")
    print(f"use it: set chat.model = \"{result.models[-1].name}\" in the profile")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from finetune.runs import Run, loss_curve, runs_dir

    if args.run:
        run = Run.open(args.run)
        if args.json:
            _print_json({**run.info, "history": run.history()})
        else:
            print(json.dumps(run.info, indent=2, default=str))
            print(loss_curve(run.history()))
        return 0
    rows = []
    if runs_dir().exists():
        for d in sorted(runs_dir().iterdir()):
            if (d / "run.json").exists():
                info = Run(d).info
                rows.append({"name": d.name, "base": info.get("base"), "method": info.get("method"),
                             "status": info.get("status"), "step": info.get("step"),
                             "last_loss": info.get("last_loss")})
    if args.json:
        _print_json(rows)
    else:
        for r in rows:
            print(f"{r['name']:<40} {r['base']:<16} {r['method']:<13} {r['status']:<12} "
                  f"step {r['step']}  loss {r['last_loss']}")
        if not rows:
            print(f"no runs yet (in {runs_dir()})")
    return 0


# --- parser -------------------------------------------------------------------------------------


def _train_args(p: argparse.ArgumentParser, method: str) -> None:
    p.add_argument("--base", help="catalogue model to start from, e.g. gemma3-270m")
    p.add_argument("--data", help="training JSONL (from 'appkit finetune prepare')")
    p.add_argument("--name", default="", help="run name (default: BASE-METHOD-TIME)")
    p.add_argument("--resume", default="", metavar="RUN",
                   help="continue an interrupted run from its newest checkpoint")
    if method == "train":
        p.add_argument("--method", choices=METHODS, default=None,
                       help="how to adapt the model (default: the profile's finetune.method)")
    p.add_argument("--r", type=int, default=0, help="LoRA rank (default: finetune.lora_r, 8)")
    p.add_argument("--virtual-tokens", type=int, default=0,
                   help="soft-prompt length of prompt and prefix tuning "
                        "(default: finetune.virtual_tokens, 20)")
    p.add_argument("--alpha", type=int, default=16, help="LoRA alpha")
    p.add_argument("--dropout", type=float, default=0.05, help="LoRA dropout")
    p.add_argument("--targets", default="", help="comma-separated projections (default: all)")
    p.add_argument("--lr", type=float, default=None,
                   help="learning rate (default: 2e-4 LoRA, 3e-3 IA3, 3e-2 prompt tuning, "
                        "1e-2 prefix tuning, 2e-5 full)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--max-steps", type=int, default=0, help="optimizer steps (0: from --epochs)")
    p.add_argument("--max-minutes", type=float, default=0.0,
                   help="training time budget: the learning rate decays to zero by its end, "
                        "then training stops with a checkpoint and final weights")
    p.add_argument("--max-tokens", type=int, default=512, help="tokens per example")
    p.add_argument("--save-every", type=int, default=50, help="steps between checkpoints")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_train, command_name=method)


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``finetune`` and its actions to the ``appkit`` command line."""
    f = subparsers.add_parser("finetune", help="tune local models on your data and use them")
    fsub = f.add_subparsers(dest="action", metavar="ACTION")

    p = fsub.add_parser("prepare", parents=[common],
                        help="build train.jsonl and a held-out split from your data")
    p.add_argument("--task", default="", help="task name for rows that do not say (default: qa)")
    p.add_argument("--from", dest="sources", action="append", metavar="FILE",
                   help="JSONL of instruction rows or an eval set (repeatable)")
    p.add_argument("--squad", action="append", metavar="FILE", help="a SQuAD v1.1 JSON file")
    p.add_argument("--synthetic", type=int, default=0, metavar="N",
                   help="N questions written by the chat model over the ingested documents")
    p.add_argument("--weight", action="append", metavar="TASK=W",
                   help="mixture weight of a task (repeatable)")
    p.add_argument("--heldout", type=float, default=0.1, help="share held out (by group)")
    p.add_argument("--min-train", type=int, default=8, help="fewest training rows accepted")
    p.add_argument("--max-rows", type=int, default=0, help="sample at most this many rows")
    p.add_argument("--out", "-o", default="finetune-data", help="output folder")
    p.add_argument("--skip-bad-rows", action="store_true",
                   help="report malformed rows and go on (default: stop at the first)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_prepare)

    _train_args(fsub.add_parser("lora", parents=[common], help="train a LoRA adapter (peft)"),
                "lora")
    _train_args(fsub.add_parser("full", parents=[common],
                                help="fine-tune every weight (tiny models)"), "full")
    _train_args(fsub.add_parser("ia3", parents=[common],
                                help="train IA3 scales on k, v and down_proj (peft)"), "ia3")
    _train_args(fsub.add_parser("prompt-tuning", parents=[common],
                                help="train a soft prompt (peft; served through transformers)"),
                "prompt-tuning")
    _train_args(fsub.add_parser("prefix-tuning", parents=[common],
                                help="train per-layer prefixes (peft; served through transformers)"),
                "prefix-tuning")
    _train_args(fsub.add_parser("train", parents=[common],
                                help="train with --method or the profile's finetune.method"),
                "train")

    for action, helptext in (("pairs", "write preference pairs (JSONL) for DPO"),
                             ("dpo", "align a LoRA run with preference pairs (DPO, trl)")):
        p = fsub.add_parser(action, parents=[common], help=helptext)
        if action == "dpo":
            p.add_argument("run", nargs="?", default="", help="the LoRA run to continue")
            p.add_argument("--name", default="", help="new run name (default: RUN-dpo)")
            p.add_argument("--beta", type=float, default=0.1)
            p.add_argument("--sft-weight", type=float, default=0.0,
                           help="add a likelihood term on the chosen answers with this weight "
                                "(RPO; keeps them likely; 0: plain DPO)")
            p.add_argument("--save-every", type=int, default=10, help="checkpoint every N steps")
            p.add_argument("--max-minutes", type=float, default=0.0,
                           help="end training (as a finished run) after this long (0: no limit)")
            p.add_argument("--resume", default="", metavar="RUN",
                           help="continue an interrupted DPO run (its own parent, pairs and "
                                "settings)")
            p.add_argument("--lr", type=float, default=5e-5)
            p.add_argument("--batch-size", type=int, default=2)
            p.add_argument("--epochs", type=float, default=1.0)
            p.add_argument("--max-steps", type=int, default=0)
            p.add_argument("--max-pairs", type=int, default=0)
            p.add_argument("--threads", type=int, default=0)
            p.set_defaults(func=cmd_dpo)
        else:
            p.add_argument("--out", "-o", required=True, help="pairs file to write")
            p.set_defaults(func=cmd_pairs)
        p.add_argument("--pairs", action="append", metavar="FILE", help="JSONL pairs (repeatable)")
        p.add_argument("--feedback", action="store_true",
                       help="pairs from the app's thumbs and corrections (the profile's store)")
        p.add_argument("--auto", action="append", metavar="DATA",
                       help="build pairs from QA rows: refuse on unrelated passages")
        p.add_argument("--seed", type=int, default=0)

    p = fsub.add_parser("pretrain", parents=[common],
                        help="train a tokenizer and a tiny model from scratch on your text (or "
                             "continue pretraining a model with LoRA), with a perplexity curve")
    p.add_argument("--data", required=True, help="a .txt/.md file or a folder of them")
    p.add_argument("--out", "-o", required=True,
                   help="output folder (model, tokenizer, curve.json)")
    p.add_argument("--vocab-size", type=int, default=4000, help="BPE vocabulary (from scratch)")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--hidden", type=int, default=192)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--block-size", type=int, default=128, help="tokens per training block")
    p.add_argument("--batch-size", type=int, default=8, help="blocks per step")
    p.add_argument("--steps", type=int, default=200, help="optimizer steps (0: until --minutes)")
    p.add_argument("--minutes", type=float, default=0.0, help="stop after this much training time")
    p.add_argument("--eval-every", type=int, default=50, help="steps between held-out evaluations")
    p.add_argument("--heldout", type=float, default=0.1,
                   help="share of the text held out (its end)")
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default: 2e-3 from scratch, 2e-4 LoRA)")
    p.add_argument("--continue-from", default="", metavar="MODEL",
                   help="continue pretraining this model (transformers folder or catalogue name, "
                        "e.g. smollm2-135m) with LoRA instead of training from scratch")
    p.add_argument("--r", type=int, default=8, help="LoRA rank (with --continue-from)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_pretrain)

    p = fsub.add_parser("distill", parents=[common],
                        help="train a small student to imitate a teacher (logit or sequence "
                             "level) and register it")
    p.add_argument("--teacher", required=True, help="catalogue model or transformers folder")
    p.add_argument("--student", required=True,
                   help="catalogue GGUF (e.g. smollm2-135m) or transformers folder")
    p.add_argument("--data", required=True, help="JSONL of prompts (outputs optional)")
    p.add_argument("--mode", choices=["auto", "logit", "sequence"], default="auto",
                   help="logit: match the teacher's token distributions (same vocabulary); "
                        "sequence: train on the teacher's answers; auto: logit when the "
                        "vocabularies match")
    p.add_argument("--name", default="", help="run and model name (default: STUDENT-distill-TIME)")
    p.add_argument("--method", choices=["full", "lora"], default="full",
                   help="train every student weight, or a LoRA adapter merged at the end")
    p.add_argument("--steps", type=int, default=0, help="optimizer steps (0: from --epochs)")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=None, help="learning rate (2e-5 full, 2e-4 LoRA)")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature (logit)")
    p.add_argument("--beta", type=float, default=0.0,
                   help="0 forward KL, 1 reverse KL, between: generalized JSD (logit)")
    p.add_argument("--max-new-tokens", type=int, default=64,
                   help="longest teacher answer (sequence)")
    p.add_argument("--teacher-answers", default="", metavar="JSONL",
                   help="reuse the teacher's answers to these prompts (a run's teacher.jsonl) "
                        "instead of asking the teacher again (sequence)")
    p.add_argument("--keep", choices=["all", "grounded", "spans"], default="all",
                   help="train on every teacher answer; grounded: only on answers found word for "
                        "word in the row's input, and refusals; spans: only the answers found "
                        "in the input (sequence; extractive tasks)")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--max-minutes", type=float, default=0.0)
    p.add_argument("--max-tokens", type=int, default=256, help="tokens per training text")
    p.add_argument("--save-every", type=int, default=50)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_distill)

    p = fsub.add_parser("prune", parents=[common],
                        help="remove layers, attention heads or MLP channels chosen by importance "
                             "on your data, optionally recover, and register the smaller model")
    p.add_argument("--model", required=True,
                   help="catalogue GGUF (e.g. smollm2-135m) or transformers folder")
    p.add_argument("--data", required=True, help="JSONL rows: importance is measured on them")
    p.add_argument("--ratio", type=float, required=True,
                   help="share of the structure removed, between 0 and 1")
    p.add_argument("--what", choices=["layers", "heads", "mlp", "vocab"], default="mlp",
                   help="decoder layers, attention heads (whole KV groups), MLP channels, or "
                        "the tokens (embedding and output rows) the data does not use")
    p.add_argument("--recover-steps", type=int, default=0,
                   help="full fine-tuning steps on the data after pruning (0: none)")
    p.add_argument("--keep-tokens-of", default="", metavar="PATH",
                   help="--what vocab: a file or folder of documents whose tokens stay too "
                        "(the documents your app answers from)")
    p.add_argument("--refit", action=argparse.BooleanOptionalAction, default=None,
                   help="heads/mlp (default: on): re-solve o_proj/down_proj by least squares on "
                        "the rows so the kept inputs reproduce the original outputs; --no-refit "
                        "only drops the removed ones")
    p.add_argument("--teacher", default="",
                   help="recover by logit distillation instead of on the answers: 'original' "
                        "(the model before pruning) or a model with the same vocabulary")
    p.add_argument("--distill-on", choices=["all", "answers"], default="all",
                   help="with --teacher: match the teacher on every token of the rows, or on "
                        "the answer tokens only")
    p.add_argument("--answer-weight", type=float, default=0.0,
                   help="with --teacher: share of the recovery loss that is the answer loss "
                        "(0: distillation only, 0.5: an even mix)")
    p.add_argument("--compare-unpruned", action="store_true",
                   help="also train the unpruned model with the same recovery and register it "
                        "as NAME-unpruned: the fair model to compare the pruned one with")
    p.add_argument("--name", default="", help="model name (default: MODEL-pruned-WHAT-TIME)")
    p.add_argument("--samples", type=int, default=32, help="rows used to measure importance")
    p.add_argument("--lr", type=float, default=2e-5, help="recovery learning rate")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=256, help="tokens per text")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_prune)

    p = fsub.add_parser("check", parents=[common],
                        help="eval before/after and a forgetting check on a retain set")
    p.add_argument("run")
    p.add_argument("--eval", help="eval set (default: finetune.eval_set, else the held-out split)")
    p.add_argument("--retain", default=None,
                   help="retain set of another task (default: finetune.retain_set)")
    p.add_argument("--threshold", type=float, default=None,
                   help="warn when retain F1 drops more (default: finetune.forgetting_threshold)")
    p.add_argument("--limit", type=int, default=0, help="score at most N rows per set")
    p.add_argument("--max-tokens", type=int, default=48, help="longest answer")
    p.set_defaults(func=cmd_check)

    p = fsub.add_parser("export", parents=[common],
                        help="write a GGUF (merged or LoRA), quantize it, register it; or register "
                             "a PEFT adapter served through transformers; a pruned model is "
                             "written whole")
    p.add_argument("run", help="a run, or a pruned model's name (appkit finetune prune)")
    p.add_argument("--quant", default="q8_0",
                   help="f16, q8_0, q4_k_m (comma-separated); q4_k_m can undo much of a merged LoRA")
    p.add_argument("--mode", choices=["merged", "lora", "transformers"], default="merged",
                   help="merged GGUF, GGUF LoRA adapter, or served through transformers: a "
                        "peft adapter (prompt and prefix tuning) or a full run's whole weights "
                        "(e.g. to prune the fine-tuned model)")
    p.add_argument("--name", default="", help="catalogue name prefix (default: the run name)")
    p.set_defaults(func=cmd_export)

    p = fsub.add_parser("runs", parents=[common], help="list runs, or show one with its loss curve")
    p.add_argument("run", nargs="?")
    p.set_defaults(func=cmd_runs)
    f.set_defaults(func=lambda args: (f.print_help(), 0)[1])
