"""The Tasks page: choose a task, paste a text, run it, see the output and, with a reference, the
metric (the fake chat model of ui.testing answers "The documents do not say.")."""

from __future__ import annotations

from tests.ui.conftest import by_label, texts

REPLY = "The documents do not say."


def choose(at, task: str):  # noqa: ANN001, ANN201
    at.selectbox(key="task-name").set_value(task).run()
    return at


def test_tasks_are_listed_without_qa(open_page) -> None:
    at = open_page("tasks")
    options = at.selectbox(key="task-name").options
    assert options[:2] == ["summarize", "translate"] and "qa" not in options
    assert "Chat page" in texts(at)


def test_summarize_with_a_reference_shows_output_and_rouge(open_page) -> None:
    at = choose(open_page("tasks"), "summarize")
    at.text_area(key="task-input").set_value("A long report about the quarter.")
    at.text_area(key="task-reference").set_value(REPLY)
    at.button(key="task-run").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    page = texts(at)
    assert "Output" in page and REPLY in page and "1 model call(s)" in page
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["rouge1"] == "1.000" and set(metrics) == {"rouge1", "rouge2", "rougeL"}


def test_errors_are_shown_not_raised(open_page) -> None:
    at = choose(open_page("tasks"), "classify")
    by_label(at.text_input, "Labels").set_value("billing, bug")
    at.text_area(key="task-input").set_value("I was charged twice.")
    at.button(key="task-run").click().run()
    assert not at.exception
    assert "names no label of ['billing', 'bug']" in at.error[0].value
    at = choose(at, "extract")
    at.text_area(key="task-reference").set_value("not json")
    at.button(key="task-run").click().run()
    assert "the reference for extract must be JSON" in at.error[0].value
    at = choose(at, "write")
    at.text_input(key="task-model").set_value("all-minilm-l6-v2")
    at.button(key="task-run").click().run()
    assert "write accepts chat models" in at.error[0].value
    at.text_input(key="task-model").set_value("")
    at.text_area(key="task-input").set_value("   ")
    at.button(key="task-run").click().run()
    assert "is empty" in at.error[0].value


def test_write_points_to_the_judge_rubric(open_page) -> None:
    at = choose(open_page("tasks"), "write")
    at.text_area(key="task-input").set_value("Write one sentence about Mondays.")
    at.button(key="task-run").click().run()
    assert not at.error and REPLY in texts(at)
    assert "graded by an LLM judge" in texts(at)
