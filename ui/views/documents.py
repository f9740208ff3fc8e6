"""Documents: add files or a folder with a progress bar and per-file results; browse, search, delete."""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from appkit.errors import AppkitError
from ui import runtime
from ui.components import load_profile_or_stop
from ui.documents import (
    collection_stats,
    count_files,
    delete_documents,
    document_rows,
    filter_rows,
    stage_uploads,
    supported_types,
    when,
)

RESULT_KEY = "appkit_ingest_result"
profile = load_profile_or_stop()
manifest = runtime.manifest_for(str(profile.data_dir))

st.title("Documents")
st.caption("Everything the chat can answer from. Files stay on this machine; only their text and "
           "embeddings are stored in the collection.")


def _human_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


stats = collection_stats(manifest)
cols = st.columns(4)
cols[0].metric("Documents", f"{stats['documents']:,}", border=True)
cols[1].metric("Chunks", f"{stats['chunks']:,}", border=True)
cols[2].metric("Size", _human_bytes(stats["bytes"]), border=True)
cols[3].metric("Last added", when(stats["last_ingested"]), border=True)
if stats["types"]:
    st.caption("By type: " + " · ".join(f"{t} {n}" for t, n in stats["types"].items())
               + (f" · embedded with {stats['embedder']}" if stats["embedder"] else ""))


def _ingest(paths: list[str], rejected: list[tuple[str, str]]) -> None:
    """Ingest with a progress bar; keep the per-file results for the table."""
    rows = [{"file": Path(name).name, "status": "rejected", "reason": reason,
             "path": name} for name, reason in rejected]
    report = None
    if paths:
        total = max(1, count_files(paths))
        bar = st.progress(0.0, text="Starting…")
        seen = 0

        def on_file(path: str, status: str) -> None:
            nonlocal seen
            seen += 1
            bar.progress(min(1.0, seen / total),
                         text=f"{seen} of {total}: {Path(path).name} {status}")

        try:
            report = runtime.get_app(profile).ingest(paths, on_file=on_file)
        except AppkitError as exc:
            bar.empty()
            st.error(f"**Ingestion failed.** {exc}", icon=":material/error:")
            return
        bar.progress(1.0, text=f"Done in {report.seconds:.1f} s")
        reasons = {s.path: s.reason for s in report.skipped}
        for path, status in report.files:
            rows.append({"file": Path(path).name, "status": status,
                         "reason": reasons.get(path, ""), "path": path})
    st.session_state[RESULT_KEY] = {"rows": rows, "report": report.to_dict() if report else None}
    st.rerun()  # redraw the statistics above with the new collection


def _delete_chosen() -> None:
    chosen = list(st.session_state.get("doc-delete-choice") or [])
    removed = delete_documents(runtime.get_app(profile), chosen)
    st.session_state["doc-delete-choice"] = []
    st.session_state["doc-delete-confirm"] = False
    st.toast(f"Deleted {len(chosen)} document(s) and {removed} chunks.", icon=":material/delete:")


add_tab, library_tab = st.tabs([":material/upload_file: Add documents", ":material/list: Library"])

with add_tab:
    left, right = st.columns(2, gap="large")
    with left:
        st.markdown("##### Upload files")
        with st.form("upload-form", clear_on_submit=True, border=False):
            uploads = st.file_uploader(
                "Files", accept_multiple_files=True, label_visibility="collapsed",
                help="Readable types: " + ", ".join(supported_types()))
            upload_clicked = st.form_submit_button("Add to collection", type="primary",
                                                   icon=":material/upload:")
        st.caption("Readable: " + " ".join(f"`.{t}`" for t in supported_types()))
    with right:
        st.markdown("##### Or a folder on this machine")
        with st.form("folder-form", border=False):
            default_folder = ", ".join(str(profile.resolve(p)) for p in profile.documents.paths)
            folder = st.text_input("Folder", value=default_folder, placeholder="~/notes",
                                   label_visibility="collapsed")
            folder_clicked = st.form_submit_button("Ingest folder", icon=":material/folder:")
        st.caption("Only new and changed files are read again; files gone from the folder are "
                   "removed from the collection.")

    if upload_clicked:
        if not uploads:
            st.warning("Choose one or more files first.", icon=":material/warning:")
        else:
            staged = stage_uploads(((f.name, f.getvalue()) for f in uploads), profile.data_dir)
            _ingest([str(p) for p in staged.accepted], staged.rejected)
    if folder_clicked:
        paths = [p.strip() for p in folder.split(",") if p.strip()]
        missing = [p for p in paths if not os.path.exists(os.path.expanduser(p))]
        if not paths:
            st.warning("Type the path of a folder first.", icon=":material/warning:")
        elif missing:
            st.error(f"No such file or folder: {', '.join(missing)}", icon=":material/error:")
        else:
            _ingest(paths, [])

    result = st.session_state.get(RESULT_KEY)
    if result:
        report = result["report"]
        if report:
            summary = (f"{report['added']} added · {report['updated']} updated · "
                       f"{report['unchanged']} unchanged · {report['deleted']} deleted · "
                       f"{len(report['skipped'])} skipped · {report['chunks_embedded']} chunks "
                       f"embedded in {report['seconds']:.1f} s")
        else:
            summary = "No file was added"
        bad = [r for r in result["rows"] if r["reason"]]
        if bad:
            st.warning((f"{summary}. " if report else "")
                       + f"{len(bad)} file(s) were not added; the reasons are below. "
                       "The collection is unchanged for them.", icon=":material/warning:")
        else:
            st.success(summary, icon=":material/check_circle:")
        st.dataframe(result["rows"], hide_index=True, width="stretch",
                     column_order=["status", "file", "reason", "path"],
                     column_config={"status": st.column_config.TextColumn("Result", width="small"),
                                    "file": "File", "reason": "Reason", "path": "Path"},
                     key="ingest-results")

with library_tab:
    rows = document_rows(manifest)
    if not rows:
        st.info("The collection is empty. Upload files or ingest a folder to get started.",
                icon=":material/info:")
    else:
        query = st.text_input("Search documents", placeholder="Filter by name or folder",
                              label_visibility="collapsed", key="doc-filter")
        shown = filter_rows(rows, query) if query else rows
        st.caption(f"{len(shown)} of {len(rows)} documents")
        st.dataframe(shown, hide_index=True, width="stretch",
                     column_order=["name", "type", "chunks", "size_kb", "ingested", "folder"],
                     column_config={
                         "name": "Name", "type": "Type",
                         "chunks": st.column_config.NumberColumn("Chunks", width="small"),
                         "size_kb": st.column_config.NumberColumn("Size (KB)", format="%.1f"),
                         "ingested": "Added", "folder": "Folder"},
                     key="doc-table")
        with st.expander("Delete documents", icon=":material/delete:"):
            chosen = st.multiselect("Documents to delete", [r["source"] for r in shown],
                                    format_func=lambda s: Path(s).name, key="doc-delete-choice")
            confirm = st.checkbox("I understand the chat will no longer answer from them",
                                  key="doc-delete-confirm")
            st.button("Delete", type="primary", disabled=not (chosen and confirm),
                      key="doc-delete", on_click=_delete_chosen, icon=":material/delete:")

        st.markdown("##### Search inside documents")
        content_query = st.text_input("Find passages", placeholder="What are you looking for?",
                                      key="doc-content-query", label_visibility="collapsed")
        if content_query:
            try:
                hits = runtime.get_app(profile).store.search(content_query, 5)
            except AppkitError as exc:
                hits = []
                st.error(str(exc), icon=":material/error:")
            for doc in hits:
                meta = doc.metadata
                where = (f"page {meta['page']}" if meta.get("page") is not None
                         else meta.get("heading") or "")
                with st.container(border=True):
                    st.markdown(f"**{Path(str(meta.get('source', ''))).name}**"
                                + (f" · {where}" if where else "")
                                + f" · relevance {float(meta.get('relevance', 0)):.2f}")
                    text = " ".join(doc.page_content.split())
                    st.caption(text[:400] + ("…" if len(text) > 400 else ""))
                    st.page_link("views/source.py", label="Open source",
                                  icon=":material/open_in_new:", query_params={"chunk": doc.id})
