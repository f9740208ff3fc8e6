"""``appkit ui`` (start the Streamlit app) and ``appkit feedback`` (export what people said).

Registered through the ``appkit.commands`` entry point; importing this module imports no Streamlit.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

MAIN_SCRIPT = Path(__file__).with_name("main.py")
THEME = {"base": "light", "primaryColor": "#4f46e5", "backgroundColor": "#ffffff",
         "secondaryBackgroundColor": "#f5f6fa", "textColor": "#1f2430"}


def streamlit_command(host: str = "127.0.0.1", port: int = 8501) -> list[str]:
    """The ``streamlit run`` command line: headless, bound to ``host``, no usage statistics."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(MAIN_SCRIPT),
           "--server.address", host, "--server.port", str(port),
           "--server.headless", "true",
           "--browser.gatherUsageStats", "false",
           "--server.fileWatcherType", "none",
           "--server.runOnSave", "false",
           "--global.developmentMode", "false",
           "--client.toolbarMode", "minimal",
           "--client.showSidebarNavigation", "true"]
    for key, value in THEME.items():
        cmd += [f"--theme.{key}", value]
    return cmd


def streamlit_env(profile: str | None = None) -> dict[str, str]:
    """The environment for the Streamlit process: the profile, offline and quiet libraries."""
    env = dict(os.environ)
    env["STREAMLIT_BROWSER_GATHER_USAGE_STATS"] = "false"
    env.setdefault("ANONYMIZED_TELEMETRY", "False")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if profile:
        env["APPKIT_PROFILE"] = str(Path(profile).expanduser().resolve())
    return env


def cmd_ui(args: argparse.Namespace) -> int:
    from appkit.lazy import require

    require("streamlit", extra="ui")
    cmd = streamlit_command(args.host, args.port)
    print(f"appkit ui: http://{args.host}:{args.port}  (Ctrl-C stops it)", flush=True)
    proc = subprocess.Popen(cmd, env=streamlit_env(args.profile))

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # Stopping `appkit ui` (Ctrl-C, or SIGTERM from a service manager) stops the server with it.
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)


def cmd_feedback(args: argparse.Namespace) -> int:
    from appkit.config import find_profile
    from appkit.feedback import FeedbackStore, eval_set, preference_pairs, to_jsonl, write_jsonl

    profile = find_profile(args.profile)
    store = FeedbackStore.for_data_dir(profile.data_dir)
    if args.action == "stats":
        summary = store.summary()
        if args.json:
            import json

            print(json.dumps(summary))
        else:
            print(f"{summary['total']} judged answers: {summary['up']} up, {summary['down']} down, "
                  f"{summary['corrected']} corrected ({store.path})")
        return 0
    records = store.all()
    rows = preference_pairs(records) if args.kind == "pairs" else eval_set(records)
    if args.output:
        n = write_jsonl(rows, args.output)
        print(f"wrote {n} {'preference pairs' if args.kind == 'pairs' else 'eval cases'} "
              f"to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(to_jsonl(rows))
    return 0


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``ui`` and ``feedback`` to the ``appkit`` command line."""
    p = subparsers.add_parser("ui", parents=[common],
                              help="the web app: chat, documents, feedback, quality, settings")
    p.add_argument("--port", type=int, default=8501, help="port to listen on (default 8501)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only)")
    p.set_defaults(func=cmd_ui)

    p = subparsers.add_parser("feedback", parents=[common],
                              help="export answer feedback as preference pairs or an eval set")
    p.add_argument("action", choices=["export", "stats"])
    p.add_argument("--as", dest="kind", choices=["pairs", "eval-set"], default="pairs",
                   help="pairs: prompt/chosen/rejected for DPO; eval-set: question/reference rows")
    p.add_argument("--output", "-o", help="JSONL file to write (default: standard output)")
    p.set_defaults(func=cmd_feedback)
