"""``appkit agent``: answer with tools, printing each step of the trace.

Registered through the ``appkit.commands`` entry-point group.
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def cmd_agent(args: argparse.Namespace) -> int:
    from appkit.app import App
    from appkit.errors import AppkitError
    from appkit.tools.agent import Agent, AgentResult

    question = " ".join(args.question).strip()
    if not question:
        raise AppkitError("the question is empty")
    app = App.from_profile_file(args.profile)
    overrides: dict[str, Any] = {}
    if args.max_steps:
        overrides["max_steps"] = args.max_steps
    if args.time_limit:
        overrides["time_limit_s"] = args.time_limit
    agent = Agent.from_app(app, names=args.tools.split(",") if args.tools else None, **overrides)
    result = None
    for item in agent.iter_steps(question):
        if isinstance(item, AgentResult):
            result = item
        elif not args.json:
            arrow = "→" if item.kind == "tool" else "·"
            detail = json.dumps(item.input, ensure_ascii=False) if item.kind == "tool" else ""
            print(f"{arrow} [{item.index}] {item.kind} {item.name}{' ' + detail if detail else ''}"
                  f" ({item.status}, {item.seconds:.1f}s): {item.output}")
    assert result is not None
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False, default=str))
    else:
        print(f"\n{result.text}")
        for c in result.citations:
            print(f"  [{c.index}] {c.label}")
    return 0 if result.stopped == "answer" else 1


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``appkit agent`` to the CLI."""
    p = sub.add_parser("agent", parents=[common],
                       help="answer with tools (documents, calculator, date, allowed HTTP)")
    p.add_argument("question", nargs="+")
    p.add_argument("--tools", help="comma-separated tool names (default: the profile's tools.enabled)")
    p.add_argument("--max-steps", type=int, default=0, help="model calls at most")
    p.add_argument("--time-limit", type=float, default=0, help="seconds at most")
    p.set_defaults(func=cmd_agent)
