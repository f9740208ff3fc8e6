"""Tasks: summarize, translate, extract, classify, write or code on a pasted or uploaded text,
with the task's metric when a reference is given."""

from __future__ import annotations

import json

import streamlit as st

from appkit.errors import AppkitError
from appkit.tasks import get_task
from ui import runtime
from ui.components import load_profile_or_stop
from ui.tasks import (
    TEXT_TYPES,
    page_tasks,
    parse_reference,
    read_upload,
    run_one,
    score_one,
    task_model,
)

RESULT_KEY = "appkit_task_result"
profile = load_profile_or_stop()
s = profile.tasks

st.title("Tasks")
st.caption("Run one task on a text with a local model. Questions about your documents are on the "
           "Chat page; `appkit run TASK --input FILE` does the same from the terminal.")

tasks = page_tasks()
c1, c2 = st.columns([1, 2])
task = c1.selectbox("Task", tasks, key="task-name",
                    index=tasks.index(profile.task) if profile.task in tasks else 0)
spec = get_task(task)
model = c2.text_input("Model", key="task-model",
                      placeholder=f"{profile.chat.model} (the profile's)",
                      help="A catalogue name, a .gguf path or a fine-tuned folder (an encoder "
                           f"classifier or tagger, a seq2seq model). {task} accepts "
                           f"{', '.join(spec.roles)} models.")
st.caption(spec.description)

options: dict[str, str] = {}
if task == "classify":
    options["labels"] = st.text_input("Labels", value=", ".join(s.labels), key="task-labels",
                                      help="Comma-separated; the text gets exactly one.")
elif task == "translate":
    a, b = st.columns(2)
    options["source"] = a.text_input("From (language code)", value=s.source_lang,
                                     key="task-source")
    options["target"] = b.text_input("To (language code)", value=s.target_lang,
                                     key="task-target")
elif task == "extract":
    options["schema"] = st.text_area("JSON Schema (optional)", key="task-schema", height=100,
                                     placeholder="Empty: named entities (PERSON, ORGANIZATION, "
                                                 "LOCATION, DATE, MISC)")
elif task == "code":
    options["tests"] = st.text_area("Tests (optional)", key="task-tests", height=120,
                                    placeholder="from solution import add\nassert add(1, 2) == 3",
                                    help="Run in a subprocess with a time limit and no network.")

upload = st.file_uploader("Upload a file", type=TEXT_TYPES, key="task-upload")
text = st.text_area("…or paste the text", key="task-input", height=180)
reference = st.text_area(
    "Reference (optional)", key="task-reference", height=80,
    help={"extract": 'JSON, e.g. {"entities": [{"text": "Ada", "type": "PERSON"}]}',
          "classify": "The right label."}.get(task, "A good output, to score against."))

if st.button("Run", type="primary", icon=":material/play_arrow:", key="task-run"):
    st.session_state.pop(RESULT_KEY, None)
    try:
        if upload is not None:
            text = read_upload(upload.name, upload.getvalue())
        ref = parse_reference(task, reference) if reference.strip() else None
        llm = task_model(profile, task, model, runtime.get_app(profile).chat_model)
        with st.spinner(f"Running {task}…"):
            result = run_one(profile, task, text, llm, **options)
        scores = score_one(task, result, ref) if ref is not None or task == "code" else {}
        st.session_state[RESULT_KEY] = (task, result, scores)
    except AppkitError as exc:
        st.error(str(exc), icon=":material/error:")

if RESULT_KEY in st.session_state and st.session_state[RESULT_KEY][0] == task:
    _, result, scores = st.session_state[RESULT_KEY]
    st.subheader("Output")
    if isinstance(result.output, (dict, list)):
        st.json(result.output)
    elif task == "code":
        st.code(result.output, language="python")
    else:
        st.markdown(str(result.output))
    st.caption(f"{result.calls} model call(s) · {result.seconds:.1f} s")
    run = result.details.get("tests")
    if run:
        verdict = "passed" if run["passed"] else ("timed out" if run["timed_out"] else "failed")
        (st.success if run["passed"] else st.error)(f"Tests {verdict} in {run['seconds']:.1f} s")
        if not run["passed"]:
            st.code(run["output"])
    if scores:
        cols = st.columns(min(4, len(scores)))
        for i, (name, value) in enumerate(scores.items()):
            cols[i % len(cols)].metric(name, f"{value:.3f}", border=True)
    if "rubric" in spec.metrics:
        st.caption("The rubric metric is graded by an LLM judge: `appkit models compare --task "
                   f"{task} --eval FILE --judge qwen2.5-coder-0.5b`.")
    with st.expander("Details", icon=":material/info:"):
        st.code(json.dumps(result.details, indent=2, ensure_ascii=False, default=str),
                language="json")
