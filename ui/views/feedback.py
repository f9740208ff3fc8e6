"""Feedback: what people said about the answers, exported for fine-tuning and evaluation."""

from __future__ import annotations

from datetime import datetime

import streamlit as st

from appkit.feedback import eval_set, preference_pairs, to_jsonl
from ui.components import feedback_store, load_profile_or_stop

profile = load_profile_or_stop()
store = feedback_store(str(profile.data_dir))

st.title("Feedback")
st.caption("Every thumbs up, thumbs down and corrected answer from the chat, with the question, the "
           "sources the model saw and the settings it ran with.")

summary = store.summary()
cols = st.columns(4)
cols[0].metric("Judged answers", summary["total"], border=True)
cols[1].metric("Thumbs up", summary["up"], border=True)
cols[2].metric("Thumbs down", summary["down"], border=True)
cols[3].metric("Corrected", summary["corrected"], border=True)

records = store.all()
if not records:
    st.info("No feedback yet. Rate answers on the Chat page with :material/thumb_up: or "
            ":material/thumb_down:, or suggest a better answer.", icon=":material/info:")
    st.stop()

pairs = preference_pairs(records)
evals = eval_set(records)
stamp = datetime.now().strftime("%Y%m%d-%H%M")

st.markdown("##### Export")
c1, c2 = st.columns(2)
with c1.container(border=True):
    st.markdown(f"**Preference pairs** · {len(pairs)} pair(s)")
    st.caption("`prompt`, `chosen`, `rejected` (plus the full `messages`) for DPO: corrections over "
               "the model's answer, and thumbs-up over thumbs-down answers to the same prompt.")
    st.download_button("Download preference pairs (JSONL)", to_jsonl(pairs),
                       file_name=f"preference-pairs-{stamp}.jsonl", mime="application/jsonl",
                       icon=":material/download:", disabled=not pairs, key="dl-pairs")
with c2.container(border=True):
    st.markdown(f"**Eval set** · {len(evals)} question(s)")
    st.caption("`question`, `reference`, `reference_contexts` for `appkit eval`: corrected answers, "
               "and answers rated thumbs-up, become the reference.")
    st.download_button("Download eval set (JSONL)", to_jsonl(evals),
                       file_name=f"eval-set-{stamp}.jsonl", mime="application/jsonl",
                       icon=":material/download:", disabled=not evals, key="dl-eval")
st.caption("From a terminal: `appkit feedback export --as pairs -o pairs.jsonl` or `--as eval-set`.")

st.markdown("##### Recent feedback")
rating_label = {1: "up", -1: "down", None: "–"}
st.dataframe(
    [{"when": r.updated_at.replace("T", " ")[:16], "rating": rating_label.get(r.rating, "–"),
      "question": r.question, "answer": r.answer, "correction": r.correction,
      "model": r.model or r.settings.get("chat_model", ""),
      "sources": len(r.contexts)} for r in records],
    hide_index=True, width="stretch", key="feedback-table",
    column_config={"when": "When", "rating": st.column_config.TextColumn("Rating", width="small"),
                   "question": st.column_config.TextColumn("Question", width="medium"),
                   "answer": st.column_config.TextColumn("Answer", width="large"),
                   "correction": st.column_config.TextColumn("Correction", width="medium"),
                   "model": "Model", "sources": st.column_config.NumberColumn("Sources",
                                                                              width="small")})
