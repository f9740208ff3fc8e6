"""Reading ``appkit eval`` run directories for the Quality page.

A run directory (written by :mod:`eval.runner`) holds ``summary.json`` and ``cases.jsonl``::

    eval-runs/20261124-101500-questions/
        summary.json   {"created": "...", "metrics": {"token_f1": {"mean": 0.61, ...}, ...},
                        "app": {"chat_model": "...", "retriever": "..."}, "timing": {...}}
        cases.jsonl    {"id": "q1", "question": "...", "answer": "...", "reference": "...",
                        "scores": {"token_f1": {"value": 0.5, "status": "ok"}, ...}}

The reader is tolerant: a metric may be a bare number instead of ``{"mean": ...}``, a score a bare
number instead of ``{"value": ...}``; unreadable lines and folders without ``summary.json`` are
skipped; a run without ``created`` is dated by its folder's modification time.

Example:
    >>> import json, pathlib, tempfile
    >>> from ui.quality import list_runs
    >>> root = pathlib.Path(tempfile.mkdtemp()); (root / "r1").mkdir()
    >>> _ = (root / "r1" / "summary.json").write_text(json.dumps({"metrics": {"f1": {"mean": 0.5}}}))
    >>> [(r.name, r.metrics) for r in list_runs([root])]
    [('r1', {'f1': 0.5})]
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

RUNS_FOLDER = "eval-runs"


def lower_is_better(metric: str) -> bool:
    """Timing, error and cost metrics improve downwards; quality metrics upwards."""
    name = metric.lower()
    return name.endswith(("_s", "_ms", "_seconds")) or any(
        word in name for word in ("latency", "error", "cost"))


@dataclass
class Run:
    """One evaluation run: its folder, when it ran, its mean metrics and the settings it ran with."""

    name: str
    path: Path
    created: str
    metrics: dict[str, float]
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.created[:16].replace('T', ' ')})"

    @property
    def model(self) -> str:
        app = self.summary.get("app") or {}
        return str(app.get("chat_model") or "")


def _number(value: Any) -> float | None:
    if isinstance(value, dict):
        value = value.get("mean", value.get("value"))
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return None if math.isnan(value) else value


def default_run_folders(profile: Any) -> list[Path]:
    """Where ``appkit eval`` writes runs: next to the profile, and under its data directory."""
    folders = [Path(profile.root) / RUNS_FOLDER, Path(profile.data_dir) / RUNS_FOLDER]
    return list(dict.fromkeys(folders))


def read_run(path: Path) -> Run | None:
    """The run in ``path``, or None when it has no readable ``summary.json``."""
    try:
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(summary, dict):
        return None
    raw = summary.get("metrics") or {}
    metrics = {str(k): v for k, v in ((k, _number(v)) for k, v in raw.items()) if v is not None} \
        if isinstance(raw, dict) else {}
    created = str(summary.get("created") or "")
    if not created:
        created = datetime.fromtimestamp(path.stat().st_mtime).isoformat(timespec="seconds")
    return Run(name=path.name, path=path, created=created, metrics=metrics, summary=summary)


def list_runs(folders: Iterable[str | os.PathLike]) -> list[Run]:
    """Every run found directly inside ``folders`` (or a folder that is itself a run), oldest first."""
    runs: dict[Path, Run] = {}
    for folder in folders:
        root = Path(folder).expanduser()
        if not root.is_dir():
            continue
        candidates = [root] if (root / "summary.json").exists() else \
            [p for p in root.iterdir() if p.is_dir()]
        for path in candidates:
            run = read_run(path)
            if run is not None:
                runs[path.resolve()] = run
    return sorted(runs.values(), key=lambda r: (r.created, r.name))


def load_cases(run: Run) -> list[dict[str, Any]]:
    """The run's per-case records, each with a flat ``metrics`` dict of numbers (bad lines skipped)."""
    cases = []
    try:
        lines = (run.path / "cases.jsonl").read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
        except ValueError:
            continue
        if not isinstance(case, dict):
            continue
        scores = case.get("scores") or {}
        case["metrics"] = {str(k): v for k, v in ((k, _number(s)) for k, s in scores.items())
                           if v is not None} if isinstance(scores, dict) else {}
        case.setdefault("id", str(n))
        cases.append(case)
    return cases


def metric_history(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Long-form rows (run, created, metric, value) for a metrics-over-runs chart."""
    return [{"run": r.name, "created": r.created, "metric": m, "value": v}
            for r in runs for m, v in r.metrics.items()]


def metric_names(runs: Sequence[Run]) -> list[str]:
    return sorted({m for r in runs for m in r.metrics})


def worst_cases(cases: Sequence[dict[str, Any]], metric: str, n: int = 10) -> list[dict[str, Any]]:
    """The ``n`` cases scoring worst on ``metric`` (cases without that score are left out)."""
    scored = [c for c in cases if metric in c.get("metrics", {})]
    reverse = lower_is_better(metric)
    scored.sort(key=lambda c: c["metrics"][metric], reverse=reverse)
    return scored[:n]


def _case_key(case: dict[str, Any]) -> str:
    return str(case.get("id") or case.get("question") or "")


def compare_runs(a: Sequence[dict[str, Any]], b: Sequence[dict[str, Any]], metric: str
                 ) -> list[dict[str, Any]]:
    """Cases of two runs side by side (matched by id, else question), largest change first."""
    by_key = {_case_key(c): c for c in b}
    rows = []
    for case in a:
        other = by_key.get(_case_key(case))
        if other is None:
            continue
        va, vb = case.get("metrics", {}).get(metric), other.get("metrics", {}).get(metric)
        delta = None if va is None or vb is None else vb - va
        rows.append({"id": _case_key(case), "question": case.get("question", ""),
                     "answer_a": case.get("answer", ""), "answer_b": other.get("answer", ""),
                     "a": va, "b": vb, "delta": delta})
    rows.sort(key=lambda r: -abs(r["delta"]) if r["delta"] is not None else 0)
    return rows
