"""``appkit models compare --task TASK --eval FILE``: every installed candidate model of a fitting
family over a task's eval set, as a table of metrics, latency, memory and size.

``appkit models compare --family [MODEL]``: the model-size table of one model and what derives
from it in the catalogue (quantized, pruned, distilled, fine-tuned): size, parameters, memory,
prompt and generation tokens/s (:mod:`eval.sizes`), plus the task's metrics with ``--task`` and
``--eval``.

The core's ``appkit models`` lists the catalogue; this plugin (an ``appkit.commands`` entry point)
gives that command an optional ``compare`` action, so the core never imports ``eval``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from collections.abc import Iterator
from typing import Any

from eval.sizes import rss_mb


def candidate_models(task: str) -> list[str]:
    """Installed catalogue models whose role the task accepts (GGUF chat and completion models)."""
    from appkit.models.catalogue import list_models
    from appkit.tasks import get_task

    roles = get_task(task).roles
    return [s.name for s in list_models() if s.installed and s.role in roles and s.format == "gguf"]


def compare_models(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Run the task's eval set with each model; one row of results per model."""
    from appkit.errors import AppkitError
    from eval.tasks import load_eval_set

    if not args.task or not args.eval:
        raise AppkitError("appkit models compare needs --task TASK and --eval FILE")
    if args.task == "qa":
        raise AppkitError("compare qa with 'appkit eval run' (it scores retrieval and answers)")
    rows = load_eval_set(args.eval)
    if args.limit:
        rows = rows[: args.limit]
    names = [m.strip() for m in args.models.split(",")] if args.models else candidate_models(
        args.task)
    if not names:
        raise AppkitError(f"no installed model fits '{args.task}'; see 'appkit models'")
    with _judge(args) as judge:
        return [_compare_one(args, name, rows, judge) for name in names]


def family_table(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``--family``: the model-size table of a model's family (:func:`eval.sizes.size_table`),
    with the task's metrics per model when ``--task`` and ``--eval`` are given."""
    import sys

    from appkit.errors import AppkitError
    from eval.sizes import size_table

    if args.models:
        raise AppkitError("give --family MODEL (a model and what derives from it) or --models "
                          "A,B (any models), not both")
    if bool(args.task) != bool(args.eval):
        raise AppkitError("the task metric needs both --task TASK and --eval FILE (or neither, "
                          "for sizes and speed only)")
    model = args.family
    if not model:
        from appkit.config import find_profile

        model = find_profile(args.profile, create=False).chat.model
    rows = size_table(model, threads=args.threads, log=lambda s: print(s, file=sys.stderr))
    if not args.task:
        return rows
    args.models = ",".join(r["model"] for r in rows if "error" not in r)
    scored = {r["model"]: r for r in compare_models(args)} if args.models else {}
    return [{**r, **{k: v for k, v in scored.get(r["model"], {}).items()
                     if k not in r and k != "role"}} for r in rows]


@contextlib.contextmanager
def _judge(args: argparse.Namespace) -> Iterator[Any]:
    """The rubric judge named by ``--judge`` (calls cached under the profile's data folder)."""
    if not getattr(args, "judge", None):
        yield None
        return
    from appkit.config import find_profile
    from eval.judge import Judge

    cache = find_profile(args.profile, create=False).data_dir / "eval-cache" / "judge"
    with Judge(args.judge, cache_dir=cache) as judge:
        yield judge


def _compare_one(args: argparse.Namespace, name: str, rows: list[dict[str, Any]],
                 judge: Any) -> dict[str, Any]:
    from appkit.models.catalogue import resolve_model
    from appkit.tasks.cli import build_context
    from eval.tasks import evaluate_task

    args.model = name
    before = rss_mb()
    _, ctx = build_context(args, args.task)
    if hasattr(ctx.llm, "warm_up"):
        ctx.llm.warm_up()
    report = evaluate_task(args.task, rows, ctx, model=name, judge=judge)
    if getattr(ctx.llm, "role", "") in ("classifier", "token-classifier"):
        role, path = ctx.llm.role, ctx.llm.path
    else:
        spec, path = resolve_model(name)
        role = spec.role
    size = path.stat().st_size if path.is_file() else sum(
        f.stat().st_size for f in path.rglob("*") if f.is_file())
    graded = report.extra.get("rubric", {})
    errors = [f"{r['input'][:60]!r}: {r['rubric'].get('reason', '')}" for r in report.rows
              if r.get("rubric", {}).get("status") == "error"]
    failed = [f"{r['input'][:60]!r}: {r['error'][:300]}" for r in report.rows if r["error"]]
    return {"model": name, "role": role, **report.metrics,
            **({"rubric_failed": graded["failed"]} if graded else {}),
            **({"rubric_errors": errors} if errors else {}),
            **({"failure_reasons": failed} if failed else {}),
            "s_per_example": report.seconds_per_example, "failures": report.failures,
            "examples": report.examples, "memory_mb": round(rss_mb() - before),
            "size_mb": round(size / 1e6)}


def print_table(table: list[dict[str, Any]]) -> None:
    keys = [k for k in dict.fromkeys(k for row in table for k in row) if k != "rubric_errors"]
    widths = {k: max(len(k), *(len(_fmt(r.get(k))) for r in table)) for k in keys}
    print("  ".join(k.ljust(widths[k]) for k in keys))
    for row in table:
        print("  ".join(_fmt(row.get(k)).ljust(widths[k]) for k in keys))
    for row in table:  # the cases the judge could not grade, and why
        for error in row.get("rubric_errors", ()):
            print(f"{row['model']}: rubric not graded for {error}")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if v < 10 else f"{v:.1f}"
    return "-" if v is None else str(v)


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Give ``appkit models`` a ``compare`` action."""
    from appkit.config import TASKS

    p = subparsers.choices.get("models")
    if p is None:
        return
    listing = p.get_default("func")
    p.add_argument("action", nargs="?", default="list", choices=["list", "compare"],
                   help="list the catalogue (default), or compare models on a task's eval set "
                        "or by size and speed (--family)")
    p.add_argument("--task", choices=[t for t in TASKS if t != "qa"], help="compare: the task")
    p.add_argument("--eval", help="compare: JSONL eval set ({'input', 'reference'} per line)")
    p.add_argument("--models", help="compare: comma-separated models (default: every installed "
                   "model the task accepts)")
    p.add_argument("--limit", type=int, help="compare: only the first N examples")
    p.add_argument("--labels", help="classify: comma-separated labels")
    p.add_argument("--source", help="translate: source language code")
    p.add_argument("--target", help="translate: target language code")
    p.add_argument("--schema", help="extract: a JSON Schema file")
    p.add_argument("--shots", choices=["zero-shot", "one-shot", "few-shot"])
    p.add_argument("--examples", help="JSONL pool of worked examples")
    p.add_argument("--max-tokens", type=int, help="tokens the model may write per call")
    p.add_argument("--judge", help="write, code: grade with the LLM-judge rubric, judged by this "
                   "model (a catalogue name, a .gguf or an endpoint URL)")
    p.add_argument("--family", nargs="?", const="", metavar="MODEL",
                   help="compare: the model-size table of MODEL (default: the profile's "
                        "chat.model) and every catalogue model derived from it (quantized, "
                        "pruned, distilled, fine-tuned): file size, parameters, memory, prompt "
                        "and generation tokens/s, each model measured in a fresh process; with "
                        "--task and --eval also the task's metrics")
    p.add_argument("--threads", type=int, default=0,
                   help="compare --family: CPU threads (0: the backends' defaults)")
    p.set_defaults(tests=None, model=None)

    def run(args: argparse.Namespace) -> int:
        if args.action != "compare":
            return listing(args)
        table = family_table(args) if args.family is not None else compare_models(args)
        if args.json:
            print(json.dumps(table, indent=2))
        else:
            print_table(table)
        return 0

    p.set_defaults(func=run)
