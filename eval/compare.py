"""Compare two runs: per-metric deltas with bootstrap confidence intervals, and the cases that
changed most.

Cases are paired by id. For each metric the delta is B minus A over the cases both runs scored;
its 95% confidence interval comes from ``scipy.stats.bootstrap`` over the paired differences
(percentile method, seeded). An interval that excludes 0 means the change is unlikely to be noise
from which cases happened to be in the test set.

Example:
    >>> from eval.compare import paired_delta
    >>> d = paired_delta([0.5, 0.6, 0.7, 0.8], [0.6, 0.7, 0.8, 0.9], resamples=200)
    >>> round(d["delta"], 3), d["n"]
    (0.1, 4)
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from eval.runner import load_run


def paired_delta(a: Sequence[float], b: Sequence[float], *, confidence: float = 0.95,
                 resamples: int = 2000, seed: int = 0) -> dict[str, Any]:
    """Mean of ``b - a`` with a bootstrap confidence interval (paired samples)."""
    import numpy as np

    diffs = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    n = len(diffs)
    out: dict[str, Any] = {"n": n, "mean_a": float(np.mean(a)) if n else None,
                           "mean_b": float(np.mean(b)) if n else None,
                           "delta": float(diffs.mean()) if n else None, "ci": None}
    if n == 0:
        return out
    if n == 1 or np.allclose(diffs, diffs[0]):
        out["ci"] = [float(diffs[0]), float(diffs[0])] if n else None
        return out
    from scipy import stats

    res = stats.bootstrap((diffs,), np.mean, confidence_level=confidence, n_resamples=resamples,
                          method="percentile", random_state=np.random.default_rng(seed))
    out["ci"] = [float(res.confidence_interval.low), float(res.confidence_interval.high)]
    return out


def compare_runs(run_a: str | os.PathLike, run_b: str | os.PathLike, *, top: int = 10,
                 confidence: float = 0.95, seed: int = 0) -> dict[str, Any]:
    """Per-metric deltas (B - A) and the ``top`` cases whose scores moved most.

    Returns:
        ``{"a": ..., "b": ..., "paired_cases": n, "only_in_a": n, "only_in_b": n,
        "metrics": {name: {mean_a, mean_b, delta, ci, n, significant}},
        "changed": [{id, question, change, deltas: {metric: delta}, answer_a, answer_b}]}``
    """
    sa, ca = load_run(run_a)
    sb, cb = load_run(run_b)
    by_a = {c["id"]: c for c in ca}
    by_b = {c["id"]: c for c in cb}
    shared = [i for i in by_a if i in by_b]
    names = [n for n in sa.get("metrics", {}) if n in sb.get("metrics", {})]
    metrics: dict[str, Any] = {}
    per_case: dict[str, dict[str, float]] = {i: {} for i in shared}
    for name in names:
        xs, ys = [], []
        for i in shared:
            x = by_a[i]["scores"].get(name, {})
            y = by_b[i]["scores"].get(name, {})
            if x.get("status") == "ok" and y.get("status") == "ok":
                xs.append(x["value"])
                ys.append(y["value"])
                per_case[i][name] = y["value"] - x["value"]
        d = paired_delta(xs, ys, confidence=confidence, seed=seed)
        d["significant"] = bool(d["ci"] and (d["ci"][0] > 0 or d["ci"][1] < 0))
        metrics[name] = d
    changed = []
    for i, deltas in per_case.items():
        if not deltas:
            continue
        change = sum(abs(v) for v in deltas.values()) / len(deltas)
        if change > 0:
            changed.append({"id": i, "question": by_a[i]["question"], "change": round(change, 4),
                            "deltas": {k: round(v, 4) for k, v in deltas.items() if v},
                            "answer_a": by_a[i].get("answer", ""),
                            "answer_b": by_b[i].get("answer", "")})
    changed.sort(key=lambda c: -c["change"])
    return {"a": str(run_a), "b": str(run_b), "paired_cases": len(shared),
            "only_in_a": len(by_a) - len(shared), "only_in_b": len(by_b) - len(shared),
            "confidence": confidence, "metrics": metrics, "changed": changed[:top]}


def render_comparison(result: dict[str, Any]) -> str:
    """The comparison as text for the terminal."""
    def f(v: Any, signed: bool = False) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "-"
        return f"{v:+.3f}" if signed else f"{v:.3f}"

    pct = int(result["confidence"] * 100)
    lines = [f"A: {result['a']}", f"B: {result['b']}",
             f"{result['paired_cases']} cases in both runs"
             + (f" ({result['only_in_a']} only in A, {result['only_in_b']} only in B)"
                if result["only_in_a"] or result["only_in_b"] else ""), "",
             f"{'metric':<28} {'A':>7} {'B':>7} {'B-A':>8}  {pct}% CI{'':<11} n"]
    for name, m in result["metrics"].items():
        ci = f"[{f(m['ci'][0], True)}, {f(m['ci'][1], True)}]" if m["ci"] else "-"
        mark = " *" if m["significant"] else ""
        lines.append(f"{name:<28} {f(m['mean_a']):>7} {f(m['mean_b']):>7} "
                     f"{f(m['delta'], True):>8}  {ci:<18} {m['n']}{mark}")
    lines.append("(* the interval excludes 0)")
    if result["changed"]:
        lines += ["", "Cases that changed most:"]
        for c in result["changed"]:
            deltas = ", ".join(f"{k} {v:+.2f}" for k, v in list(c["deltas"].items())[:4])
            lines.append(f"  {c['id']}: {c['question'][:70]}  ({deltas})")
            lines.append(f"      A: {' '.join(c['answer_a'].split())[:100]}")
            lines.append(f"      B: {' '.join(c['answer_b'].split())[:100]}")
    return "\n".join(lines)
