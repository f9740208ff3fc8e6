"""Settings: the profile, chat model, retriever, generation and prompt, saved back to the profile."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import streamlit as st

from appkit.config import Profile, ShotExample, save_profile
from appkit.errors import AppkitError
from ui import runtime

st.title("Settings")
st.caption("Saved to the profile file, so `appkit ask`, `appkit chat` and `appkit eval` use them too.")

# --- which profile ---------------------------------------------------------------------------

st.markdown("##### Profile")
candidates = runtime.profile_candidates()
current_path = runtime.profile_path()


def _switch() -> None:
    runtime.set_profile_path(st.session_state["profile-choice"])


def _open_other() -> None:
    path = os.path.expanduser(st.session_state.get("profile-other", "").strip())
    if path:
        runtime.set_profile_path(path)


cwd = Path.cwd()


def _short(path: str) -> str:
    try:
        return str(Path(path).relative_to(cwd))
    except ValueError:
        return path


cols = st.columns([2, 1], vertical_alignment="bottom")
cols[0].selectbox("Profile in use", candidates, index=candidates.index(current_path),
                  format_func=_short, key="profile-choice", on_change=_switch,
                  help="Each browser tab can use its own profile. New tabs start with the one "
                       "`appkit ui` was started with.")
with cols[1].popover("Open another", icon=":material/folder_open:", width="stretch"):
    st.text_input("Path to a profile TOML (created with defaults if missing)", key="profile-other")
    st.button("Open", on_click=_open_other, type="primary")

try:
    profile = runtime.current_profile()
except AppkitError as exc:
    st.error(f"**This profile cannot be used.** {exc}", icon=":material/error:")
    st.stop()

# --- the form --------------------------------------------------------------------------------


def _model_options(current: str) -> tuple[list[str], dict[str, str]]:
    from appkit.models.catalogue import list_models

    labels: dict[str, str] = {}
    for spec in list_models():
        if spec.role not in ("chat", "completion"):
            continue
        tags = []
        if spec.lineage:
            tags.append("fine-tuned")
        if spec.role == "completion":
            tags.append("base model")
        if not spec.installed:
            tags.append("not installed")
        labels[spec.name] = spec.name + (f"  ({', '.join(tags)})" if tags else "")
    if current not in labels:
        labels[current] = f"{current}  (from the profile)"
    return list(labels), labels


def _retriever_options(current: str) -> list[str]:
    from appkit.retrieval import retriever_names

    names = retriever_names()
    return names if current in names else [current, *names]


def _examples_rows(examples: tuple[ShotExample, ...]) -> list[dict[str, str]]:
    return [{"question": e.question, "context": e.context, "answer": e.answer} for e in examples]


def _examples_from(edited: Any) -> tuple[ShotExample, ...]:
    rows = edited.to_dict("records") if hasattr(edited, "to_dict") else list(edited or [])
    out = []
    for row in rows:
        q, a = str(row.get("question") or "").strip(), str(row.get("answer") or "").strip()
        if q and a:
            out.append(ShotExample(question=q, answer=a, context=str(row.get("context") or "").strip()))
    return tuple(out)


# Keys carry the profile's identity and version, so switching or saving shows the file's values.
_version = abs(hash((str(profile.source), os.stat(profile.source).st_mtime_ns
                     if profile.source and os.path.exists(profile.source) else 0))) % 10**8


def key(name: str) -> str:
    return f"{name}-{_version}"


models, model_labels = _model_options(profile.chat.model)
retrievers = _retriever_options(profile.retrieval.retriever)
g = profile.chat.generation
modes = ["zero-shot", "one-shot", "few-shot"]

with st.form("settings-form", border=False):
    model_tab, gen_tab, prompt_tab = st.tabs([":material/smart_toy: Model and retrieval",
                                              ":material/tune: Generation",
                                              ":material/edit_note: Prompt"])
    with model_tab:
        chat_model = st.selectbox("Chat model", models, index=models.index(profile.chat.model),
                                  format_func=model_labels.get, key=key("set-model"),
                                  help="Every catalogue model, fine-tuned ones included "
                                       "(`appkit models` lists them).")
        retriever = st.selectbox("Retriever", retrievers,
                                 index=retrievers.index(profile.retrieval.retriever),
                                 key=key("set-retriever"),
                                 help="dense: embeddings only; hybrid: embeddings and BM25; "
                                      "rerank: a second stage reorders the candidates.")
        k = st.slider("Sources given to the model", 1, 12, profile.retrieval.k, key=key("set-k"))
        min_relevance = st.slider("Minimum relevance", 0.0, 1.0,
                                  float(profile.retrieval.min_relevance), 0.05,
                                  key=key("set-min-relevance"),
                                  help="Chunks scoring below this are not shown to the model; with "
                                       "none left the answer says the documents do not cover it.")
    with gen_tab:
        c1, c2 = st.columns(2)
        temperature = c1.slider("Temperature", 0.0, 2.0, float(g.temperature), 0.05,
                                key=key("set-temperature"), help="0 always picks the likeliest word.")
        top_p = c2.slider("Top-p", 0.05, 1.0, float(g.top_p), 0.05, key=key("set-top-p"))
        top_k = c1.number_input("Top-k", 0, 500, int(g.top_k), key=key("set-top-k"),
                                help="0 disables top-k sampling.")
        max_tokens = c2.number_input("Max answer tokens", 16, 4096, int(g.max_tokens), step=16,
                                     key=key("set-max-tokens"))
    with prompt_tab:
        mode = st.segmented_control("Prompt mode", modes, default=profile.prompt.mode,
                                    key=key("set-mode"), required=True,
                                    help="One-shot uses the first example, few-shot all of them.")
        system = st.text_area("System instructions", profile.prompt.system, height=100,
                              key=key("set-system"))
        template = st.text_area("Question template (must contain {context} and {question})",
                                profile.prompt.template, height=130, key=key("set-template"))
        st.caption("Worked examples: one-shot needs one, few-shot at least two.")
        edited = st.data_editor(
            _examples_rows(profile.prompt.examples) or [{"question": "", "context": "", "answer": ""}],
            num_rows="dynamic", width="stretch", key=key("set-examples"),
            column_config={"question": st.column_config.TextColumn("Question", width="medium"),
                           "context": st.column_config.TextColumn("Source text", width="large"),
                           "answer": st.column_config.TextColumn("Answer", width="medium")})
    submitted = st.form_submit_button("Save to profile", type="primary", icon=":material/save:")

if submitted:
    new = dataclasses.replace(
        profile,
        chat=dataclasses.replace(
            profile.chat, model=chat_model,
            generation=dataclasses.replace(g, temperature=float(temperature), top_p=float(top_p),
                                           top_k=int(top_k), max_tokens=int(max_tokens))),
        retrieval=dataclasses.replace(profile.retrieval, retriever=retriever, k=int(k),
                                      min_relevance=float(min_relevance)),
        prompt=dataclasses.replace(profile.prompt, mode=mode or profile.prompt.mode,
                                   system=system, template=template,
                                   examples=_examples_from(edited)),
    )
    try:
        Profile.from_dict(new.to_dict(), path=profile.source)
    except AppkitError as exc:
        st.error(f"**Not saved.** {exc}", icon=":material/error:")
    else:
        save_profile(new, profile.source or runtime.profile_path())
        st.success(f"Saved to {_short(str(profile.source))}. The next answer uses these settings.",
                   icon=":material/check_circle:")
