"""The HTML report of a run: summary, judge and its caveat, metric distributions, and every case
(question, answer, contexts, scores), worst first.

The page is one self-contained file (plots are inline PNGs drawn with matplotlib), so it can be
attached to a CI job or mailed.

Example:
    >>> from eval.report import primary_metric
    >>> primary_metric({"token_f1": {"scored": 3}, "faithfulness": {"scored": 2}})
    'faithfulness'
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Which metric orders the cases ("worst first"), most telling first.
PRIMARY_ORDER = ("faithfulness", "token_f1", "answer_relevancy", "rougeL", "context_recall",
                 "hit_rate@5", "citation_correctness", "has_citation")


def primary_metric(metrics: dict[str, Any]) -> str | None:
    """The metric cases are sorted by: the first of :data:`PRIMARY_ORDER` with scores."""
    for name in PRIMARY_ORDER:
        if metrics.get(name, {}).get("scored"):
            return name
    return next((n for n, m in metrics.items() if m.get("scored")), None)


def worst_first(records: Sequence[dict[str, Any]], metric: str | None) -> list[dict[str, Any]]:
    """Failed cases first, then ascending by ``metric``, then cases it does not apply to."""
    def key(r: dict[str, Any]) -> tuple[int, float]:
        if r.get("error"):
            return (0, 0.0)
        s = r["scores"].get(metric) if metric else None
        if not s or s["status"] == "n/a":
            return (3, 0.0)
        if s["status"] == "error":
            return (1, 0.0)
        return (2, s["value"])

    return sorted(records, key=key)


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _plots(records: Sequence[dict[str, Any]], names: Sequence[str]) -> list[tuple[str, str]]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    out = []
    for name in names:
        values = [r["scores"][name]["value"] for r in records
                  if r["scores"].get(name, {}).get("status") == "ok"]
        if not values:
            continue
        fig, ax = plt.subplots(figsize=(3.2, 2.0))
        lo, hi = min(0.0, min(values)), max(1.0, max(values))
        ax.hist(values, bins=10, range=(lo, hi), color="#4a78b0", edgecolor="white")
        ax.set_title(f"{name} (n={len(values)})", fontsize=9)
        ax.tick_params(labelsize=7)
        out.append((name, _png(fig)))
        plt.close(fig)
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "NaN" if math.isnan(v) else f"{v:.3f}"
    return html.escape(str(v))


def _score_cell(s: dict[str, Any] | None) -> str:
    if not s:
        return "<td></td>"
    if s["status"] == "ok":
        v = s["value"]
        hue = int(120 * max(0.0, min(1.0, v)))
        return f'<td style="background:hsl({hue},60%,88%)">{v:.2f}</td>'
    title = html.escape(s.get("reason", ""), quote=True)
    label = "n/a" if s["status"] == "n/a" else "NaN"
    cls = "na" if s["status"] == "n/a" else "err"
    return f'<td class="{cls}" title="{title}">{label}</td>'


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ddd;padding:3px 6px;vertical-align:top}
th{background:#f4f4f4;text-align:left}
.na{color:#999}.err{color:#b00;font-weight:bold}
.caveat{background:#fff4d6;border:1px solid #e0c060;padding:.5em;margin:.5em 0}
.plots img{margin:4px;border:1px solid #eee}
details{margin:.2em 0}.ctx{font-size:12px;color:#444;white-space:pre-wrap}
.cited{border-left:3px solid #4a78b0;padding-left:4px}
td.case{min-width:30em;max-width:50em}th.m{font-size:11px;max-width:6em;word-break:break-all}
"""


def render_report(records: Sequence[dict[str, Any]], summary: dict[str, Any]) -> str:
    """The report as one HTML page."""
    metrics = summary.get("metrics", {})
    names = list(metrics)
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>appkit eval</title>"
             f"<style>{CSS}</style></head><body><h1>appkit eval</h1>"]
    app = summary.get("app", {})
    ts = summary.get("testset", {})
    timing = summary.get("timing", {})
    parts.append(
        f"<p>{e(str(summary.get('created', '')))} · test set <code>{e(str(ts.get('path') or '(in memory)'))}</code>"
        f" ({ts.get('cases')} cases) · chat model <b>{e(str(app.get('chat_model')))}</b> · "
        f"retriever {e(str(app.get('retriever')))} (k={app.get('k')}) · "
        f"{timing.get('generated', 0)} answered, {timing.get('cached', 0)} from cache, "
        f"mean {_fmt(timing.get('mean_case_s'))} s per case</p>")
    if ts.get("skipped_lines"):
        parts.append("<p class='caveat'>Skipped test set lines: "
                     + "; ".join(e(s) for s in ts["skipped_lines"]) + "</p>")
    judge = summary.get("judge")
    if judge:
        agree = judge.get("agreement") or {}
        line = (f"Judge <b>{e(judge['name'])}</b>" + (
            f": TPR {_fmt(agree.get('tpr'))} on {agree.get('positives')} faithful and TNR "
            f"{_fmt(agree.get('tnr'))} on {agree.get('negatives')} unfaithful hand-labelled "
            "answers" if agree else ": agreement with hand labels not measured"))
        parts.append(f"<p>{line}</p>")
        if judge.get("caveat"):
            parts.append(f"<p class='caveat'>{e(judge['caveat'])}</p>")
    gate = summary.get("gate")
    if gate:
        parts.append(f"<p><b>Quality gate: {'passed' if gate['passed'] else 'FAILED'}</b></p>")
    parts.append("<h2>Metrics</h2><table><tr><th>metric</th><th>mean</th><th>std</th>"
                 "<th>scored</th><th>n/a</th><th>failed</th><th>commonest failure</th></tr>")
    for name, m in metrics.items():
        fail = m["failures"][0]["reason"] if m.get("failures") else ""
        parts.append(f"<tr><td>{e(name)}</td><td>{_fmt(m['mean'])}</td><td>{_fmt(m['std'])}</td>"
                     f"<td>{m['scored']}</td><td>{m['not_applicable']}</td><td>{m['failed']}</td>"
                     f"<td>{e(fail)}</td></tr>")
    parts.append("</table><h2>Distributions</h2><div class='plots'>")
    for name, png in _plots(records, names):
        parts.append(f"<img alt='{e(name)}' src='data:image/png;base64,{png}'>")
    primary = primary_metric(metrics)
    parts.append(f"</div><h2>Cases, worst first (by {e(str(primary))})</h2><table><tr>"
                 "<th>#</th><th>question / answer / contexts</th>"
                 + "".join(f"<th class='m'>{e(n)}</th>" for n in names) + "</tr>")
    for i, r in enumerate(worst_first(records, primary), 1):
        ctx = "".join(
            f"<div class='ctx{' cited' if c.get('cited') else ''}'>[{c.get('index')}] "
            f"{e(Path(str(c.get('source', ''))).name)}: {e(str(c.get('text', ''))[:600])}</div>"
            for c in r.get("contexts", []))
        ref = " | ".join(r.get("answers") or [])
        err = f"<div class='err'>{e(r['error'])}</div>" if r.get("error") else ""
        parts.append(
            f"<tr><td>{i}</td><td class='case'><b>{e(r['question'])}</b><br>{e(r.get('answer', ''))}"
            f"{'<br><i>reference: ' + e(ref) + '</i>' if ref else ''}{err}"
            f"<details><summary>{len(r.get('contexts', []))} contexts · "
            f"{_fmt(r.get('wall_s'))} s{' (cached)' if r.get('cached') else ''}</summary>{ctx}"
            f"</details></td>" + "".join(_score_cell(r["scores"].get(n)) for n in names) + "</tr>")
    parts.append("</table></body></html>")
    return "".join(parts)


def write_report(run_dir: str | Path, records: Sequence[dict[str, Any]],
                 summary: dict[str, Any]) -> Path:
    path = Path(run_dir) / "report.html"
    path.write_text(render_report(records, summary), encoding="utf-8")
    return path
