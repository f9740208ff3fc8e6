"""Chat: streamed answers with their sources, per-answer feedback, saved conversations."""

from __future__ import annotations

import time

import streamlit as st

from appkit.errors import AppkitError
from appkit.types import Answer
from ui import runtime
from ui.chat import (
    capture_context,
    escape_markdown,
    mark_citations,
    max_question_chars,
    truncate_question,
)
from ui.components import (
    ASSISTANT_AVATAR,
    USER_AVATAR,
    conversation_store,
    load_profile_or_stop,
    recent_conversations,
    render_answer_body,
    render_feedback,
    render_sources,
    render_turn,
    show_problems,
)
from ui.conversations import Conversation

CONVO_KEY = "appkit_conversation"
# Redraw the growing answer at most 10 times a second (the first piece at once): each redraw costs
# the browser about 12 ms of CPU, which on a two-core machine is taken from the model.
REFRESH_SECONDS = 0.1

profile = load_profile_or_stop()
data_dir = str(profile.data_dir)
store = conversation_store(data_dir)
profile_source = str(profile.source or "")

convo: Conversation | None = st.session_state.get(CONVO_KEY)
if convo is None or convo.profile != profile_source:
    convo = Conversation.new(profile_source)
    st.session_state[CONVO_KEY] = convo


def _open(conversation_id: str) -> None:
    loaded = store.load(conversation_id)
    if loaded is not None:
        loaded.profile = profile_source
        st.session_state[CONVO_KEY] = loaded


def _new() -> None:
    st.session_state[CONVO_KEY] = Conversation.new(profile_source)


def _delete(conversation_id: str) -> None:
    store.delete(conversation_id)
    if st.session_state[CONVO_KEY].id == conversation_id:
        _new()


with st.sidebar:
    st.button("New chat", icon=":material/add_comment:", on_click=_new, width="stretch",
              type="primary" if convo.turns else "secondary")
    saved = recent_conversations(store)
    if saved:
        st.caption("Recent conversations")
        for item in saved[:15]:
            current = item["id"] == convo.id
            st.button(item["title"], key=f"open-{item['id']}", on_click=_open, args=(item["id"],),
                      width="stretch", type="tertiary", disabled=current,
                      icon=":material/chat_bubble:" if current else ":material/chat_bubble_outline:",
                      help=f"{item['turns']} question(s), last {item['updated_at'][:16]}")
        if convo.turns and any(i["id"] == convo.id for i in saved):
            st.button("Delete this conversation", icon=":material/delete:", type="tertiary",
                      on_click=_delete, args=(convo.id,), key="delete-convo")

manifest = runtime.manifest_for(data_dir)
problems = runtime.readiness(profile, manifest)

if not convo.turns:
    st.title("Ask your documents")
    docs = manifest.count()
    st.caption(f"{docs} document{'s' if docs != 1 else ''} · {profile.chat.model} · answers cite "
               "their sources, and nothing leaves this machine.")
else:
    st.subheader(convo.title or "Conversation")

blocked = show_problems(problems)

for turn in convo.turns:
    render_turn(turn, convo, data_dir)

limit = max_question_chars(profile)
prompt = st.chat_input("Ask a question about your documents", key="question",
                       submit_mode="stop", disabled=blocked)

if prompt and not blocked:
    question, truncated = truncate_question(prompt, limit)
    history = convo.history
    with st.chat_message("user", avatar=USER_AVATAR):
        st.markdown(escape_markdown(question))
        if truncated:
            st.warning(f"Your question was {len(prompt.strip()):,} characters long; only the first "
                       f"{len(question):,} were sent to the model.", icon=":material/content_cut:")
    settings = runtime.settings_snapshot(profile)
    app = runtime.get_app(profile)
    with st.chat_message("assistant", avatar=ASSISTANT_AVATAR):
        body = st.empty()
        pieces: list[str] = []
        answer: Answer | None = None
        error: str | None = None
        stream = app.stream(question, history)
        try:
            with body.container():
                with st.spinner("Reading your documents…"):
                    first = next(stream, None)
            if isinstance(first, Answer):
                answer = first
            elif first is not None:
                pieces.append(first)
                body.markdown(mark_citations(first) + " ▌")
                shown = time.perf_counter()
                for item in stream:
                    if isinstance(item, Answer):
                        answer = item
                        break
                    pieces.append(item)
                    now = time.perf_counter()
                    if now - shown >= REFRESH_SECONDS:
                        body.markdown(mark_citations("".join(pieces)) + " ▌")
                        shown = now
        except AppkitError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - show it and keep the app alive
            error = f"{type(exc).__name__}: {exc}"
        finally:
            stream.close()
            if answer is None and error is None:
                # Stopped (the Stop button ends the script run here): keep what was written.
                partial = Answer(question=question, text="".join(pieces).strip(),
                                 model=profile.chat.model)
                convo.add_turn(question, partial, stopped=True, truncated=truncated,
                               settings=settings)
                store.save(convo)
        if error is not None:
            body.error(f"**No answer.** {error}", icon=":material/error:")
        elif answer is not None:
            turn = convo.add_turn(question, answer, truncated=truncated, settings=settings)
            with body.container():
                render_answer_body(turn)
            render_sources(turn)
            render_feedback(turn, convo, data_dir)
            turn.contexts, turn.messages = capture_context(app, answer, history)
            store.save(convo)
