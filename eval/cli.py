"""``appkit eval``: the commands this layer adds (entry point ``appkit.commands: eval``).

* ``appkit eval run TESTSET`` answers every case with the app's own chain, scores it, and writes a
  run directory (``cases.jsonl``, ``summary.json``, ``report.html``).
* ``appkit eval generate -o testset.jsonl -n 20`` writes a synthetic test set from your chunks.
* ``appkit eval import FILE --format ragas|squad|beir -o testset.jsonl`` converts other test sets.
* ``appkit eval compare RUN_A RUN_B`` shows per-metric deltas with bootstrap intervals.
* ``appkit eval gate [RUN]`` checks the profile's ``[quality_gate]``; exit status 1 when it fails.
* ``appkit eval judge-check`` measures a judge's agreement with hand-labelled answers.

Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from appkit.errors import AppkitError


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``eval`` and its actions to the ``appkit`` command line."""
    e = subparsers.add_parser("eval", help="evaluate answer quality: run, compare, gate")
    esub = e.add_subparsers(dest="eval_action", metavar="ACTION")
    e.set_defaults(func=lambda args: (e.print_help(), 0)[1])

    p = esub.add_parser("run", parents=[common], help="answer and score a test set")
    p.add_argument("testset", help="a JSONL test set")
    p.add_argument("--out", "-o", help="the run directory (default: eval-runs/<time>-<name>)")
    p.add_argument("--metrics", "-m",
                   help="comma-separated metric names (default: the cheap metrics plus the judge "
                        "metrics the quality gate names); 'all' adds every judge metric; 'alignment' "
                        "adds correct_refusal, harmful_refusal, grounded_answer and (with "
                        "chat.reward_model) reward_score")
    p.add_argument("--judge", help="judge model: a catalogue name, a .gguf or an endpoint URL "
                                   "http://host:port/v1#model (default: best installed)")
    p.add_argument("--no-judge", action="store_true", help="leave out every judge metric")
    p.add_argument("--no-judge-check", action="store_true",
                   help="skip measuring the judge on the hand-labelled answers")
    p.add_argument("--no-cache", action="store_true", help="answer and judge everything again")
    p.add_argument("--on-error", choices=["raise", "skip"], default="raise",
                   help="a malformed test set line stops the run (raise) or is left out (skip)")
    p.add_argument("--limit", type=int, help="only the first N cases")
    p.add_argument("--gate", action="store_true",
                   help="also check the quality gate (exit status 1 when it fails)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run)

    p = esub.add_parser("generate", parents=[common],
                        help="write a synthetic test set from your ingested chunks")
    p.add_argument("--out", "-o", required=True, help="the JSONL file to write")
    p.add_argument("-n", type=int, default=20, help="cases to keep (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(func=cmd_generate)

    p = esub.add_parser("import", parents=[common],
                        help="convert a ragas, SQuAD or BEIR test set to appkit's JSONL")
    p.add_argument("source", help="the file (ragas, SQuAD) or folder (BEIR)")
    p.add_argument("--format", "-f", required=True, choices=["ragas", "squad", "beir"])
    p.add_argument("--out", "-o", required=True, help="the JSONL file to write")
    p.add_argument("--sample", type=int, help="SQuAD: keep N questions drawn with --seed")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="test", help="BEIR: the qrels split (default test)")
    p.set_defaults(func=cmd_import)

    p = esub.add_parser("compare", parents=[common], help="per-metric deltas between two runs")
    p.add_argument("run_a")
    p.add_argument("run_b")
    p.add_argument("--top", type=int, default=10, help="cases that changed most to show")
    p.set_defaults(func=cmd_compare)

    p = esub.add_parser("gate", parents=[common],
                        help="check [quality_gate] against a run (exit 1 when it fails)")
    p.add_argument("run", nargs="?", help="the run directory (default: the newest in eval-runs/)")
    p.add_argument("--min-scored", type=float, default=0.5,
                   help="fail a metric scored on fewer than this share of applicable cases")
    p.set_defaults(func=cmd_gate)

    p = esub.add_parser("judge-check", parents=[common],
                        help="a judge's agreement (TPR/TNR) with hand-labelled answers")
    p.add_argument("--judge", help="judge model or endpoint (default: best installed)")
    p.add_argument("--limit", type=int, help="only the first N faithful and N unfaithful cases")
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(func=cmd_judge_check)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def _app(args: argparse.Namespace) -> Any:
    from appkit.app import App

    return App.from_profile_file(args.profile)


def _metric_names(args: argparse.Namespace, profile: Any) -> list[str] | None:
    from eval.metrics import ALIGNMENT_METRICS, DEFAULT_METRICS, JUDGE_METRICS
    from eval.runner import default_metric_names

    if args.metrics:
        names: list[str] = []
        for n in args.metrics.split(","):
            n = n.strip()
            if n == "all":
                names += [*DEFAULT_METRICS, *JUDGE_METRICS]
            elif n == "alignment":
                names += [m for m in ALIGNMENT_METRICS
                          if m != "reward_score" or profile.chat.reward_model]
            elif n:
                names.append(n)
    else:
        names = default_metric_names(profile)
    if args.no_judge:
        names = [n for n in names if n not in JUDGE_METRICS]
    return names


def render_summary(summary: dict[str, Any]) -> str:
    """The run's summary as text for the terminal."""
    lines = []
    judge = summary.get("judge")
    lines.append(f"{'metric':<28} {'mean':>7} {'scored':>7} {'n/a':>5} {'failed':>7}")
    for name, m in summary["metrics"].items():
        mean = "-" if m["mean"] is None else f"{m['mean']:.3f}"
        lines.append(f"{name:<28} {mean:>7} {m['scored']:>7} {m['not_applicable']:>5} "
                     f"{m['failed']:>7}")
        for f in m.get("failures", [])[:1]:
            lines.append(f"    {f['count']} failed: {f['reason']}")
    if judge:
        agree = judge.get("agreement")
        if agree:
            from eval.judge_check import JudgeAgreement

            lines.append(JudgeAgreement(**agree).line())
        else:
            lines.append(f"judge {judge['name']} (agreement with hand labels not measured)")
        if judge.get("caveat"):
            lines.append(f"caveat: {judge['caveat']}")
    t = summary["timing"]
    lines.append(f"{summary['testset']['cases']} cases: {t['generated']} answered, "
                 f"{t['cached']} from cache, {t['app_failures']} failed; mean {t['mean_case_s']:.2f}"
                 f" s per answer; total {t['total_s']:.1f} s")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    from eval.runner import EvalRunner
    from eval.testset import load_testset

    cases, problems = load_testset(args.testset, on_error=args.on_error)
    for p in problems:
        print(f"appkit eval: skipped {args.testset} {p}", file=sys.stderr)
    if args.limit:
        cases = cases[: args.limit]
    app = _app(args)
    runner = EvalRunner(app, metrics=_metric_names(args, app.profile), judge=args.judge,
                        use_cache=not args.no_cache, judge_check=not args.no_judge_check,
                        progress=not (args.quiet or args.json))
    result = runner.run(cases, args.out, testset_path=args.testset, problems=problems)
    gate = None
    if args.gate:
        gate = _check_and_record(app.profile, result.run_dir, result.summary, 0.5)
    if args.json:
        _print_json({"run_dir": str(result.run_dir), **result.summary})
    else:
        print(render_summary(result.summary))
        print(f"run written to {result.run_dir} (report: {result.run_dir / 'report.html'})")
        if gate is not None:
            print(gate.render())
    return 0 if gate is None or gate.passed else 1


def _check_and_record(profile: Any, run_dir: Path, summary: dict[str, Any],
                      min_scored: float) -> Any:
    from eval.gate import check_gate

    gate = check_gate(profile.quality_gate, summary, min_scored=min_scored)
    summary["gate"] = gate.to_dict()
    (run_dir / "gate.json").write_text(json.dumps(gate.to_dict(), indent=2), encoding="utf-8")
    return gate


def newest_run(folder: Path) -> Path:
    runs = sorted((p for p in folder.glob("*") if (p / "summary.json").exists()),
                  key=lambda p: (p / "summary.json").stat().st_mtime)
    if not runs:
        raise AppkitError(f"no run in {folder}; run 'appkit eval run TESTSET' first, or name "
                          "the run directory")
    return runs[-1]


def cmd_gate(args: argparse.Namespace) -> int:
    from appkit.config import find_profile
    from eval.runner import load_run

    profile = find_profile(args.profile, create=False)
    run_dir = Path(args.run) if args.run else newest_run(profile.root / "eval-runs")
    summary, _ = load_run(run_dir)
    if not profile.quality_gate:
        raise AppkitError(
            f"the profile {profile.source} has no [quality_gate]; add thresholds such as "
            "faithfulness = \">= 0.7\" under [quality_gate]")
    gate = _check_and_record(profile, run_dir, summary, args.min_scored)
    if args.json:
        _print_json({"run_dir": str(run_dir), **gate.to_dict()})
    else:
        print(f"run: {run_dir}")
        print(gate.render())
    return 0 if gate.passed else 1


def cmd_compare(args: argparse.Namespace) -> int:
    from eval.compare import compare_runs, render_comparison

    result = compare_runs(args.run_a, args.run_b, top=args.top)
    if args.json:
        _print_json(result)
    else:
        print(render_comparison(result))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from eval.generate import generate_testset
    from eval.testset import save_testset

    if args.n < 1:
        raise AppkitError("-n must be at least 1")
    app = _app(args)
    cases, report = generate_testset(app, args.n, seed=args.seed,
                                     progress=not (args.quiet or args.json))
    if not cases:
        raise AppkitError(f"no question passed the quality filters ({report.to_dict()})")
    path = save_testset(cases, args.out)
    if args.json:
        _print_json({"out": str(path), **report.to_dict()})
    else:
        rejected = ", ".join(f"{v} {k}" for k, v in report.rejected.most_common())
        print(f"wrote {len(cases)} cases to {path} from {report.tried} chunks"
              + (f"; rejected: {rejected}" if rejected else ""))
    return 0 if len(cases) >= args.n else 1


def cmd_import(args: argparse.Namespace) -> int:
    from eval.testset import from_beir, from_ragas, from_squad, save_testset

    if not os.path.exists(args.source):
        raise AppkitError(f"no such file or folder: {args.source}")
    if args.format == "squad":
        cases = from_squad(args.source, sample=args.sample, seed=args.seed)
    elif args.format == "beir":
        cases = from_beir(args.source, split=args.split)
    else:
        cases = from_ragas(args.source)
    path = save_testset(cases, args.out)
    if args.json:
        _print_json({"out": str(path), "cases": len(cases)})
    else:
        print(f"wrote {len(cases)} cases to {path}")
    return 0


def cmd_judge_check(args: argparse.Namespace) -> int:
    from appkit.config import find_profile
    from eval.judge import Judge
    from eval.judge_check import check_judge

    profile = find_profile(args.profile, create=False)
    cache = profile.data_dir / "eval-cache" / "judge"
    with Judge(args.judge, cache_dir=cache) as judge:
        result = check_judge(judge, cache_dir=cache, limit=args.limit,
                             progress=not (args.quiet or args.json))
    if args.json:
        _print_json(result.to_dict())
    else:
        print(result.line())
        for c in result.cases:
            if c["status"] != "ok":
                print(f"  {c['id']}: not scored ({c.get('reason', '')})")
        if judge.caveat:
            print(f"caveat: {judge.caveat}")
    return 0
