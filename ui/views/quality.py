"""Quality: ``appkit eval`` runs as charts, the worst cases, and two runs side by side."""

from __future__ import annotations

import os

import altair as alt
import pandas as pd
import streamlit as st

from ui.chat import escape_markdown, mark_citations
from ui.components import load_profile_or_stop
from ui.quality import (
    compare_runs,
    default_run_folders,
    list_runs,
    load_cases,
    lower_is_better,
    metric_history,
    metric_names,
    worst_cases,
)

profile = load_profile_or_stop()

st.title("Quality")
st.caption("How well the answers score on your test sets, run by run. Make a run with "
           "`appkit eval run questions.jsonl`.")

folders = [str(p) for p in default_run_folders(profile)]
with st.expander("Where runs are read from", icon=":material/folder:"):
    extra = st.text_input("Another runs folder", placeholder="~/projects/eval-runs",
                          key="quality-folder")
    st.caption(" · ".join(f"`{f}`" for f in folders))
if extra.strip():
    folders.append(os.path.expanduser(extra.strip()))

runs = list_runs(folders)
if not runs:
    st.info("No evaluation runs yet. Write a few questions with reference answers to a JSONL file "
            "(or export an eval set from the Feedback page), then run `appkit eval run FILE`.",
            icon=":material/info:")
    st.stop()

metrics = metric_names(runs)
latest = runs[-1]
previous = runs[-2] if len(runs) > 1 else None

st.markdown(f"##### Latest run · {latest.label}" + (f" · {latest.model}" if latest.model else ""))
cols = st.columns(min(4, max(1, len(latest.metrics))))
for i, (name, value) in enumerate(sorted(latest.metrics.items())):
    delta = None
    if previous and name in previous.metrics:
        delta = f"{value - previous.metrics[name]:+.3f}"
    cols[i % len(cols)].metric(name, f"{value:.3f}", delta=delta, border=True,
                               delta_color="inverse" if lower_is_better(name) else "normal")

over_tab, dist_tab, worst_tab, compare_tab = st.tabs(
    [":material/show_chart: Over runs", ":material/bar_chart: Distribution",
     ":material/warning: Worst cases", ":material/compare_arrows: Compare runs"])

with over_tab:
    history = pd.DataFrame(metric_history(runs[-30:]))
    chosen = st.multiselect("Metrics", metrics, default=metrics[:6], key="quality-metrics")
    data = history[history["metric"].isin(chosen)] if chosen else history
    chart = (alt.Chart(data).mark_line(point=True)
             .encode(x=alt.X("run:N", sort=None, title=None, axis=alt.Axis(labelAngle=-30)),
                     y=alt.Y("value:Q", title="mean"), color=alt.Color("metric:N", title="metric"),
                     tooltip=["run", "created", "metric", alt.Tooltip("value:Q", format=".3f")])
             .properties(height=320))
    st.altair_chart(chart, width="stretch")

run_labels = {r.label: r for r in reversed(runs)}

with dist_tab:
    c1, c2 = st.columns(2)
    run = run_labels[c1.selectbox("Run", list(run_labels), key="dist-run")]
    cases = load_cases(run)
    case_metrics = sorted({m for c in cases for m in c["metrics"]})
    if not case_metrics:
        st.info("This run has no per-case scores.", icon=":material/info:")
    else:
        metric = c2.selectbox("Metric", case_metrics, key="dist-metric")
        values = pd.DataFrame({"value": [c["metrics"][metric] for c in cases
                                         if metric in c["metrics"]]})
        chart = (alt.Chart(values).mark_bar()
                 .encode(x=alt.X("value:Q", bin=alt.Bin(maxbins=20), title=metric),
                         y=alt.Y("count():Q", title="cases"))
                 .properties(height=280))
        st.altair_chart(chart, width="stretch")
        st.caption(f"{len(values)} scored cases · mean {values['value'].mean():.3f} · "
                   f"median {values['value'].median():.3f}")

with worst_tab:
    c1, c2 = st.columns(2)
    run = run_labels[c1.selectbox("Run", list(run_labels), key="worst-run")]
    cases = load_cases(run)
    case_metrics = sorted({m for c in cases for m in c["metrics"]})
    if not case_metrics:
        st.info("This run has no per-case scores.", icon=":material/info:")
    else:
        metric = c2.selectbox("Metric", case_metrics, key="worst-metric")
        for case in worst_cases(cases, metric, 10):
            with st.container(border=True):
                st.markdown(f"**{case['metrics'][metric]:.3f}** · "
                            f"{escape_markdown(str(case.get('question', '')))}")
                a, b = st.columns(2)
                a.caption("Answer")
                a.markdown(mark_citations(str(case.get("answer") or "")) or "_(none)_")
                b.caption("Reference")
                b.markdown(mark_citations(str(case.get("reference") or "")) or "_(none)_")
                if case.get("error"):
                    st.error(case["error"], icon=":material/error:")

with compare_tab:
    if len(runs) < 2:
        st.info("Compare needs two runs.", icon=":material/info:")
    else:
        labels = list(run_labels)
        c1, c2 = st.columns(2)
        a = run_labels[c1.selectbox("Run A", labels, index=1, key="cmp-a")]
        b = run_labels[c2.selectbox("Run B", labels, index=0, key="cmp-b")]
        table = pd.DataFrame([
            {"metric": m, "A": a.metrics.get(m), "B": b.metrics.get(m),
             "change": (b.metrics[m] - a.metrics[m]) if m in a.metrics and m in b.metrics else None}
            for m in metrics])
        st.dataframe(table, hide_index=True, width="stretch", key="cmp-table",
                     column_config={"A": st.column_config.NumberColumn(format="%.3f"),
                                    "B": st.column_config.NumberColumn(format="%.3f"),
                                    "change": st.column_config.NumberColumn(format="%+.3f")})
        cases_a, cases_b = load_cases(a), load_cases(b)
        shared = sorted({m for c in cases_a for m in c["metrics"]}
                        & {m for c in cases_b for m in c["metrics"]})
        if shared:
            metric = st.selectbox("Cases by metric", shared, key="cmp-metric")
            rows = compare_runs(cases_a, cases_b, metric)
            st.caption(f"{len(rows)} cases in both runs, largest change first")
            st.dataframe(rows, hide_index=True, width="stretch", key="cmp-cases",
                         column_order=["question", "a", "b", "delta", "answer_a", "answer_b"],
                         column_config={
                             "question": st.column_config.TextColumn("Question", width="medium"),
                             "a": st.column_config.NumberColumn("A", format="%.3f"),
                             "b": st.column_config.NumberColumn("B", format="%.3f"),
                             "delta": st.column_config.NumberColumn("Change", format="%+.3f"),
                             "answer_a": st.column_config.TextColumn("Answer A", width="large"),
                             "answer_b": st.column_config.TextColumn("Answer B", width="large")})
