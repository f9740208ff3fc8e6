"""Source: one stored chunk in full, with its neighbours, opened from a citation."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from appkit.errors import AppkitError
from ui import runtime
from ui.components import load_profile_or_stop

profile = load_profile_or_stop()
chunk_id = st.query_params.get("chunk", "")

st.page_link("views/chat.py", label="Back to the chat", icon=":material/arrow_back:")

if not chunk_id:
    st.info("Open a source from an answer's citations to read it here.", icon=":material/info:")
    st.stop()

app = runtime.get_app(profile)
try:
    found = app.store.get(ids=[chunk_id])
except AppkitError as exc:
    st.error(str(exc), icon=":material/error:")
    st.stop()
if not found:
    st.warning("This source is no longer in the collection (the file was changed or deleted "
               "since the answer was given).", icon=":material/warning:")
    st.stop()

doc = found[0]
meta = doc.metadata
source = str(meta.get("source", ""))
where = f"Page {meta['page']}" if meta.get("page") is not None else (meta.get("heading") or "")
st.title(Path(source).name or "Source")
st.caption(" · ".join(p for p in (where, source, f"chunk {int(meta.get('chunk_index', 0)) + 1}")
                      if p))

def show(text: str) -> None:
    """Markdown files as formatted text; everything else exactly as written."""
    if Path(source).suffix.lower() in (".md", ".markdown"):
        st.markdown(text.replace("$", "\\$"))
    else:
        st.text(text)


with st.container(border=True):
    show(doc.page_content)

index = meta.get("chunk_index")
if isinstance(index, int) and source:
    neighbours = app.store.get(where={"$and": [{"source": source},
                                               {"chunk_index": {"$in": [index - 1, index + 1]}}]})
    by_index = {d.metadata.get("chunk_index"): d for d in neighbours}
    cols = st.columns(2)
    for col, i, label in ((cols[0], index - 1, "Before"), (cols[1], index + 1, "After")):
        if i in by_index:
            with col.expander(label, icon=":material/unfold_more:"):
                show(by_index[i].page_content)
                st.page_link("views/source.py", label="Open", icon=":material/open_in_new:",
                             query_params={"chunk": by_index[i].id})
