"""The ``appkit`` command line.

Core commands live here; packages above the core (``eval``, ``finetune``, ``ui``, …) add theirs
through the ``appkit.commands`` entry-point group: each entry point is a function that takes the
argparse sub-parsers object and adds its command, setting ``func`` on it. Nothing heavy is imported
until a command runs, so ``appkit --help`` is instant.

Exit codes: 0 success; 1 the command ran but something was skipped or failed a check; 2 a user error
(bad profile, missing model, unknown name); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any

from appkit import __version__
from appkit.errors import AppkitError

COMMANDS_GROUP = "appkit.commands"


def _quiet_libraries() -> None:
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def _app(args: argparse.Namespace) -> Any:
    from appkit.app import App

    return App.from_profile_file(args.profile)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False, default=str))


# --- ingest ------------------------------------------------------------------------------------


def cmd_ingest(args: argparse.Namespace) -> int:
    app = _app(args)
    if args.engine != "ray" and args.ray_address:
        raise AppkitError("--ray-address needs --engine ray")
    if args.engine == "ray":
        from appkit.ingest.ray_engine import RayIngestor

        # App.ingest runs whichever ingestor the app holds.
        app.ingestor = RayIngestor(app.profile, address=args.ray_address, workers=args.workers)
    if args.reembed:
        app.ingestor.reembed()
    report = app.ingest(args.paths or None, rehash=args.rehash)
    if args.json:
        _print_json(report.to_dict())
    else:
        print(
            f"ingested in {report.seconds:.1f}s: {report.added} added, {report.updated} updated, "
            f"{report.unchanged} unchanged, {report.deleted} deleted, "
            f"{report.chunks_embedded} chunks embedded"
            + (f", {report.ignored} files of other types ignored" if report.ignored else "")
        )
        if report.skipped:
            print(f"skipped {len(report.skipped)} file(s):", file=sys.stderr)
            for s in report.skipped:
                print(f"  {s.path}: {s.reason}", file=sys.stderr)
    return 0 if report.ok else 1


# --- ask and chat ------------------------------------------------------------------------------


def _print_sources(answer: Any, out: Any = None) -> None:
    from appkit.types import Answer

    out = out or sys.stdout  # looked up per call: a default bound at import misses redirection
    assert isinstance(answer, Answer)
    if not answer.found:
        return
    shown = answer.cited or answer.citations
    title = "Sources:" if answer.cited else "Sources consulted (none cited explicitly):"
    print(f"\n{title}", file=out)
    for c in shown:
        print(f"  [{c.index}] {c.source}{f':{c.page}' if c.page is not None else ''}"
              f"{f' ({c.heading})' if c.heading else ''}", file=out)
    t = answer.timings
    if t.get("best_of"):
        print(f"(best of {int(t['best_of'])}: {t['best_of_extra']:.1f} s more than one answer, "
              f"{t['reward']:.2f} s of it scoring)", file=out)


def _stream_answer(app: Any, question: str, history: list[tuple[str, str]]) -> Any:
    from appkit.types import Answer

    answer = None
    for item in app.stream(question, history):
        if isinstance(item, Answer):
            answer = item
        else:
            print(item, end="", flush=True)
    print()
    return answer


def cmd_ask(args: argparse.Namespace) -> int:
    app = _app(args)
    question = " ".join(args.question).strip()
    if not question:
        raise AppkitError("the question is empty")
    if args.json:
        _print_json(app.ask(question).to_dict())
        return 0
    answer = _stream_answer(app, question, [])
    _print_sources(answer)
    return 0


def cmd_chat(args: argparse.Namespace) -> int:
    app = _app(args)
    history: list[tuple[str, str]] = []
    print("appkit chat: ask about your documents. /reset clears the history, /exit quits.")
    while True:
        try:
            question = input("\nyou> ").strip()
        except EOFError:
            print()
            return 0
        if not question:
            continue
        if question in ("/exit", "/quit"):
            return 0
        if question == "/reset":
            history.clear()
            print("history cleared")
            continue
        print("appkit> ", end="", flush=True)
        answer = _stream_answer(app, question, history)
        _print_sources(answer)
        history.append((question, answer.text))


# --- models, config, doctor --------------------------------------------------------------------


def cmd_models(args: argparse.Namespace) -> int:
    from appkit.models.catalogue import list_models

    rows = []
    for spec in list_models():
        size = spec.size
        if not size and spec.installed and spec.parts and len(spec.parts) == 1:
            from appkit.models.catalogue import _part_path

            p = _part_path(spec.parts[0], spec)
            size = p.stat().st_size if p.is_file() else sum(
                f.stat().st_size for f in p.rglob("*") if f.is_file())
        rows.append({"name": spec.name, "role": spec.role, "format": spec.format,
                     "installed": spec.installed, "size_mb": round(size / 1e6, 1) if size else None,
                     "description": spec.description, "install": spec.install,
                     "lineage": spec.lineage})
    if args.json:
        _print_json(rows)
        return 0
    print(f"{'name':<22} {'role':<11} {'format':<22} {'installed':<10} {'size':>9}  description")
    for r in rows:
        size = f"{r['size_mb']:.0f} MB" if r["size_mb"] else "-"
        print(f"{r['name']:<22} {r['role']:<11} {r['format']:<22} "
              f"{'yes' if r['installed'] else 'no':<10} {size:>9}  {r['description']}")
    missing = [r for r in rows if not r["installed"]]
    for r in missing:
        print(f"  to install {r['name']}: {r['install']}")
    return 0


def cmd_config(args: argparse.Namespace) -> int:
    from appkit.config import Profile, find_profile, load_profile, save_profile

    action = args.action
    if action == "init":
        path = args.profile or "appkit.toml"
        if os.path.exists(path) and not args.force:
            raise AppkitError(f"{path} exists; pass --force to overwrite it")
        save_profile(Profile(), path)
        print(f"wrote {path}")
        return 0
    if action == "validate":
        profile = load_profile(args.file or args.profile or "appkit.toml")
        print(f"{profile.source}: ok")
        return 0
    profile = find_profile(args.profile, create=action == "show")
    if action == "path":
        print(profile.source)
        return 0
    if args.json:
        _print_json(profile.to_dict())
    else:
        import tomli_w

        print(f"# {profile.source}")
        print(tomli_w.dumps(profile.to_dict()), end="")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from appkit.doctor import diagnose

    report = diagnose(args.profile, verify=args.verify)
    if args.json:
        _print_json(report)
    else:
        from appkit.doctor import render

        print(render(report))
    return 0 if report["ok"] else 1


def cmd_bench(args: argparse.Namespace) -> int:
    target = args.target
    if target[0] == "ingest" and len(target) == 2:
        from appkit.bench_ingest import render_ingest_bench, run_ingest_bench

        report = run_ingest_bench(target[1], profile_path=args.profile)
        if args.json:
            _print_json(report)
        else:
            print(render_ingest_bench(report))
        return 0
    if len(target) != 1:
        raise AppkitError("usage: appkit bench FOLDER, or appkit bench ingest FOLDER")
    from appkit.bench import render, run_bench

    report = run_bench(target[0], profile_path=args.profile, questions=args.questions)
    if args.json:
        _print_json(report)
    else:
        print(render(report))
    return 0


# --- parser ------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--profile", "-p", help="profile TOML (default: $APPKIT_PROFILE or ./appkit.toml)")
    common.add_argument("--json", action="store_true", help="machine-readable output")

    parser = argparse.ArgumentParser(
        prog="appkit", description="Chat over your own documents with local models, offline.")
    parser.add_argument("--version", action="version", version=f"appkit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("ingest", parents=[common], help="add or update documents (incremental)")
    p.add_argument("paths", nargs="*", help="folders or files (default: the profile's documents.paths)")
    p.add_argument("--rehash", action="store_true", help="hash every file, even if size and mtime match")
    p.add_argument("--reembed", action="store_true",
                   help="drop the collection and embed everything again (after an embedder change)")
    p.add_argument("--engine", choices=["single", "ray"], default="single",
                   help="single: this process (default); ray: a Ray Data job (docs/ray.md)")
    p.add_argument("--ray-address", default=None,
                   help="a running Ray cluster (default: start a local Ray on this machine's CPUs)")
    p.add_argument("--workers", type=int, default=2, help="embedding actors with --engine ray")
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("ask", parents=[common], help="ask one question; streams the answer and sources")
    p.add_argument("question", nargs="+")
    p.set_defaults(func=cmd_ask)

    p = sub.add_parser("chat", parents=[common], help="multi-turn chat in the terminal")
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("models", parents=[common], help="the model catalogue")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("config", parents=[common], help="show, create or check the profile")
    p.add_argument("action", nargs="?", default="show", choices=["show", "init", "validate", "path"])
    p.add_argument("file", nargs="?", help="the profile to validate")
    p.add_argument("--force", action="store_true", help="overwrite with init")
    p.set_defaults(func=cmd_config)

    p = sub.add_parser("doctor", parents=[common], help="what is installed and how llama.cpp was built")
    p.add_argument("--verify", action="store_true", help="re-hash every model file")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("bench", parents=[common], help="measure this laptop on your own folder",
                       description="appkit bench FOLDER: ingestion, retrieval and generation. "
                       "appkit bench ingest FOLDER: where ingestion time goes, stage by stage.")
    p.add_argument("target", nargs="+", metavar="[ingest] FOLDER", help="a document folder")
    p.add_argument("--questions", type=int, default=3, help="questions to time generation with")
    p.set_defaults(func=cmd_bench)

    for ep in entry_points(group=COMMANDS_GROUP):
        try:
            ep.load()(sub, common)
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the core CLI
            print(f"appkit: plugin command '{ep.name}' failed to load: {exc}", file=sys.stderr)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    _quiet_libraries()
    try:
        return int(args.func(args) or 0)
    except AppkitError as exc:
        print(f"appkit: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("\nappkit: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
