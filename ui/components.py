"""Pieces of the pages that more than one page draws: answers with sources and feedback, notices."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import streamlit as st

from appkit.errors import AppkitError
from appkit.feedback import FeedbackStore
from ui import runtime
from ui.branding import ICON_SVG
from ui.chat import escape_markdown, feedback_record, mark_citations
from ui.conversations import Conversation, ConversationStore, Turn

SOURCE_PAGE = "views/source.py"
ASSISTANT_AVATAR = ICON_SVG
USER_AVATAR = ":material/person:"
PAGE_FILES = {"documents": "views/documents.py", "settings": "views/settings.py",
              "chat": "views/chat.py"}


@st.cache_resource(show_spinner=False, max_entries=16)
def feedback_store(data_dir: str) -> FeedbackStore:
    """One feedback store per data directory and process."""
    return FeedbackStore.for_data_dir(data_dir)


def conversation_store(data_dir: str | os.PathLike) -> ConversationStore:
    return ConversationStore.for_data_dir(data_dir)


@st.cache_data(show_spinner=False, max_entries=16)
def _conversation_list(folder: str, mtime_ns: int) -> list[dict[str, Any]]:
    return ConversationStore(folder).list()


def recent_conversations(store: ConversationStore) -> list[dict[str, Any]]:
    """The saved conversations, newest first, re-read only when the folder changes (every save
    replaces a file, which changes the folder's modification time)."""
    try:
        mtime = store.folder.stat().st_mtime_ns
    except OSError:
        return []
    return _conversation_list(str(store.folder), mtime)


def load_profile_or_stop() -> Any:
    """The session's profile; a broken profile file stops the page with its error."""
    try:
        return runtime.current_profile()
    except AppkitError as exc:
        st.error(f"**The profile cannot be used.** {exc}", icon=":material/error:")
        st.page_link("views/settings.py", label="Choose another profile on Settings",
                     icon=":material/tune:")
        st.stop()


def show_problems(problems: list[runtime.Problem]) -> bool:
    """Draw readiness problems; True when one of them stops the chat."""
    blocking = False
    for p in problems:
        if p.level == "error":
            blocking = True
            st.error(p.message, icon=":material/error:")
        else:
            st.info(p.message, icon=":material/info:")
        if p.page in PAGE_FILES:
            st.page_link(PAGE_FILES[p.page], label=f"Open {p.page.title()}",
                         icon=":material/arrow_forward:")
    return blocking


def sidebar_footer() -> None:
    """The profile, model and retriever in use, under the page list."""
    try:
        profile = runtime.current_profile()
    except AppkitError:
        return
    name = Path(str(profile.source)).name if profile.source else "default"
    with st.sidebar:
        st.caption(f":material/description: {name}  \n:material/smart_toy: {profile.chat.model}"
                   f"  \n:material/search: {profile.retrieval.retriever} retrieval")


# --- answers ---------------------------------------------------------------------------------


def source_label(citation: Any) -> str:
    return f"[{citation.index}] {citation.label}"


def render_sources(turn: Turn) -> None:
    """The answer's sources: cited ones (or all consulted), each with its quote and a link."""
    answer = turn.answer
    if not answer.found or not answer.citations:
        return
    shown = answer.cited or answer.citations
    title = "Sources" if answer.cited else "Sources consulted"
    st.caption(f":material/menu_book: **{title}:** " + " · ".join(source_label(c) for c in shown))
    with st.expander(f"Show {len(shown)} source{'s' if len(shown) != 1 else ''}", expanded=False):
        for c in shown:
            where = f"page {c.page}" if c.page is not None else (c.heading or "")
            st.markdown(f"**[{c.index}] {escape_markdown(Path(c.source).name)}**"
                        + (f" · {escape_markdown(where)}" if where else "")
                        + f" · relevance {c.relevance:.2f}")
            snippet = re.sub(r"(^|\s)#{1,6}\s", " ", " ".join(c.snippet.split())).strip()
            st.markdown("> " + escape_markdown(snippet))
            if c.chunk_id:
                st.page_link(SOURCE_PAGE, label="Open source", icon=":material/open_in_new:",
                             query_params={"chunk": c.chunk_id})


def _save_feedback(turn: Turn, conversation: Conversation, data_dir: str, key: str) -> None:
    value = st.session_state.get(key)
    store = feedback_store(data_dir)
    old = store.get(turn.id)
    rating = None if value is None else (1 if value == 1 else -1)
    record = feedback_record(turn, conversation, rating=rating,
                             correction=old.correction if old else "",
                             comment=old.comment if old else "")
    store.put(record)
    st.toast("Thanks, feedback saved." if rating else "Rating removed.",
             icon=":material/check_circle:")


def _save_correction(turn: Turn, conversation: Conversation, data_dir: str, key: str) -> None:
    text = str(st.session_state.get(key, "")).strip()
    store = feedback_store(data_dir)
    old = store.get(turn.id)
    record = feedback_record(turn, conversation, rating=old.rating if old else None,
                             correction=text, comment=old.comment if old else "")
    store.put(record)
    st.toast("Correction saved." if text else "Correction removed.", icon=":material/check_circle:")


def render_feedback(turn: Turn, conversation: Conversation, data_dir: str) -> None:
    """Thumbs up/down and a corrected answer, saved to the feedback store as soon as given."""
    store = feedback_store(data_dir)
    old = store.get(turn.id)
    thumbs_key, fix_key = f"fb-{turn.id}", f"fix-{turn.id}"
    default = None if not old or old.rating is None else (1 if old.rating == 1 else 0)
    with st.container(horizontal=True, vertical_alignment="center", gap="medium"):
        st.feedback("thumbs", key=thumbs_key, default=default, on_change=_save_feedback,
                    args=(turn, conversation, data_dir, thumbs_key))
        label = "Edit correction" if old and old.correction else "Suggest a better answer"
        with st.popover(label, icon=":material/edit:", type="tertiary"):
            with st.form(f"form-{fix_key}", border=False):
                st.text_area("What should the answer have been?", key=fix_key,
                             value=old.correction if old else "", height=120)
                st.form_submit_button("Save correction", type="primary",
                                      on_click=_save_correction,
                                      args=(turn, conversation, data_dir, fix_key))


def render_answer_body(turn: Turn) -> None:
    answer = turn.answer
    if not answer.found:
        st.markdown(answer.text)
        st.caption(":material/search_off: Nothing in your documents matched this question.")
        return
    st.markdown(mark_citations(answer.text) or "_(no answer)_")
    if turn.stopped:
        st.caption(":material/stop_circle: Stopped before the answer was finished.")


def render_turn(turn: Turn, conversation: Conversation, data_dir: str) -> None:
    """A question and its answer, with sources and feedback controls."""
    with st.chat_message("user", avatar=USER_AVATAR):
        st.markdown(escape_markdown(turn.question))
        if turn.truncated:
            st.caption(":material/content_cut: This question was shortened to fit the model.")
    with st.chat_message("assistant", avatar=ASSISTANT_AVATAR):
        render_answer_body(turn)
        render_sources(turn)
        render_feedback(turn, conversation, data_dir)
