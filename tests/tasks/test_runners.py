"""Each task with fake models: prompts, outputs, long inputs and bad inputs."""

from __future__ import annotations

import json

import pytest

from appkit.config import TasksConfig
from appkit.tasks import (
    ENTITY_SCHEMA,
    TaskContext,
    TaskInputError,
    TaskOutputError,
    check_schema,
    get_task,
    run_task,
    task_names,
)
from appkit.tasks.shots import Shot, load_pool, select_shots
from appkit.testing import FakeChatModel, HashingEmbeddings


def ctx(replies=(), **kw) -> TaskContext:
    settings = kw.pop("settings", TasksConfig())
    return TaskContext(FakeChatModel(replies=list(replies), default="ok"), settings, **kw)


def test_registry_lists_every_profile_task_with_metrics_and_roles():
    assert task_names() == ["qa", "summarize", "translate", "extract", "classify", "write", "code"]
    assert get_task("summarize").metrics == ("rouge1", "rouge2", "rougeL")
    assert get_task("translate").metrics == ("bleu", "chrf")
    assert "entity_f1" in get_task("extract").metrics
    assert get_task("classify").metrics == ("accuracy", "macro_f1")
    assert "seq2seq" in get_task("summarize").roles and "classifier" in get_task("classify").roles


def test_unknown_task_names_the_known_ones():
    with pytest.raises(Exception, match="known tasks: qa, summarize"):
        get_task("poem")


@pytest.mark.parametrize("task", ["summarize", "translate", "extract", "classify", "write", "code"])
@pytest.mark.parametrize("text", ["", "  \n\t "])
def test_empty_document_is_a_clear_error(task, text):
    with pytest.raises(TaskInputError, match="is empty"):
        run_task(task, text, ctx(settings=TasksConfig(labels=("a", "b"))))


def test_summarize_short_document_is_one_call():
    c = ctx(["A short summary."])
    result = run_task("summarize", "The sensor reads humidity every minute.", c)
    assert result.output == "A short summary." and result.calls == 1
    assert result.details == {"pieces": 1, "rounds": 0, "transcript": False}
    prompt = c.llm.calls[0][-1].content
    assert "Summarize this document" in prompt and "humidity" in prompt


def test_summarize_longer_than_the_context_maps_and_reduces():
    text = "\n\n".join(f"Paragraph {i}: the project team met and decided item {i}. " * 6
                       for i in range(40))
    c = ctx(n_ctx=512, max_tokens=64)
    c.llm.default = "part summary"
    result = run_task("summarize", text, c)
    assert result.details["pieces"] > 1
    assert result.calls == result.details["pieces"] + 1  # map every piece, reduce once
    for call in c.llm.calls:  # every prompt fits the context
        assert sum(len(m.text) // 4 + 8 for m in call) <= 512 - 64
    assert "summaries of consecutive parts" in c.llm.calls[-1][-1].content


def test_summarize_reduces_again_when_the_summaries_are_too_long():
    text = "word " * 6000
    c = ctx(n_ctx=512, max_tokens=64)
    c.llm.default = "long summary " * 40  # each partial summary is ~130 tokens
    result = run_task("summarize", text, c)
    assert result.details["rounds"] >= 2


def test_summarize_recognises_a_chat_transcript():
    c = ctx(["They agreed on Friday."])
    text = "Ana: can we ship on Friday?\nBo: yes, if tests pass.\nAna: great, Friday then."
    result = run_task("summarize", text, c)
    assert result.details["transcript"] is True
    assert "chat transcript" in c.llm.calls[0][-1].content


def test_translate_names_the_languages_in_the_prompt():
    c = ctx(["Bonjour le monde."], settings=TasksConfig(source_lang="en", target_lang="fr"))
    assert run_task("translate", "Hello world.", c).output == "Bonjour le monde."
    assert "from English to French" in c.llm.calls[0][0].content


@pytest.mark.parametrize("src,tgt,field", [("xx", "fr", "source language"),
                                           ("en", "klingon", "target language")])
def test_translate_unknown_language_code(src, tgt, field):
    with pytest.raises(TaskInputError, match=f"unknown {field} code"):
        run_task("translate", "Hello.", ctx(settings=TasksConfig(source_lang=src, target_lang=tgt)))


def test_translate_same_language_is_refused():
    with pytest.raises(TaskInputError, match="both 'en'"):
        run_task("translate", "Hi.", ctx(settings=TasksConfig(source_lang="en", target_lang="en")))


def test_translate_long_input_piece_by_piece():
    c = ctx(n_ctx=400, max_tokens=64)
    result = run_task("translate", "One sentence here. " * 400, c)
    assert result.details["pieces"] > 1 and result.calls == result.details["pieces"]


def test_extract_named_entities_parse_and_validate():
    reply = json.dumps({"entities": [{"text": "Ada Lovelace", "type": "PERSON"}]})
    c = ctx([reply])
    result = run_task("extract", "Ada Lovelace wrote notes.", c)
    assert result.output == {"entities": [{"text": "Ada Lovelace", "type": "PERSON"}]}
    assert result.details["named_entities"] is True
    assert '"PERSON"' in c.llm.calls[0][0].content  # the schema is in the prompt


def test_extract_user_schema_and_merge_of_pieces():
    schema = {"type": "object", "properties": {"names": {"type": "array",
                                                         "items": {"type": "string"}}},
              "required": ["names"]}
    c = ctx(n_ctx=1024, max_tokens=64, schema=schema)
    c.llm.replies = [json.dumps({"names": ["Ada", "Bob"]}), json.dumps({"names": ["Bob", "Cy"]})]
    c.llm.default = json.dumps({"names": []})
    result = run_task("extract", "Names appear here. " * 600, c)
    assert result.details["pieces"] > 1
    assert result.output["names"] == ["Ada", "Bob", "Cy"]


def test_extract_retries_once_with_more_tokens_when_the_json_is_cut_off():
    whole = json.dumps({"entities": [{"text": "Ada", "type": "PERSON"}]})
    c = ctx([whole[:20], whole])
    result = run_task("extract", "Ada wrote.", c)
    assert result.output["entities"][0]["text"] == "Ada" and result.calls == 2


def test_extract_output_that_does_not_parse_is_a_clear_error():
    with pytest.raises(TaskOutputError, match="does not fit the output schema"):
        run_task("extract", "Ada wrote.", ctx(["not json"]))
    with pytest.raises(TaskOutputError, match="'type' is a required property"):
        run_task("extract", "Ada wrote.", ctx(['{"entities": [{"text": "Ada"}]}'] * 2))


@pytest.mark.parametrize("schema,match", [
    ({"type": "object", "properties": {"a": {"type": "strin"}}}, "not a valid JSON Schema"),
    ({"type": "object", "required": "a"}, "not a valid JSON Schema"),
    ({"type": "array"}, "must describe an object"),
    (["not", "a", "schema"], "must be a JSON object"),
])
def test_invalid_json_schema(schema, match):
    with pytest.raises(TaskInputError, match=match):
        check_schema(schema)
    with pytest.raises(TaskInputError, match=match):
        run_task("extract", "text", ctx(schema=schema))


def test_schema_file_errors(tmp_path):
    from appkit.tasks import load_schema

    bad = tmp_path / "s.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(TaskInputError, match="is not JSON"):
        load_schema(bad)
    with pytest.raises(TaskInputError, match="cannot read"):
        load_schema(tmp_path / "missing.json")
    assert check_schema(ENTITY_SCHEMA) is ENTITY_SCHEMA


def test_classify_json_or_plain_label():
    s = TasksConfig(labels=("billing", "bug", "feature"))
    assert run_task("classify", "I was charged twice.", ctx(['{"label": "billing"}'],
                                                            settings=s)).output == "billing"
    assert run_task("classify", "Crash on start.", ctx(["Label: bug"], settings=s)).output == "bug"
    with pytest.raises(TaskOutputError, match="names no label"):
        run_task("classify", "Hm.", ctx(["no idea"], settings=s))


def test_classify_empty_label_set():
    with pytest.raises(TaskInputError, match="classify needs labels"):
        run_task("classify", "Some text.", ctx(settings=TasksConfig(labels=())))
    with pytest.raises(TaskInputError, match="classify needs labels"):
        run_task("classify", "Some text.", ctx(settings=TasksConfig(labels=(" ", ""))))


def test_write_returns_the_text():
    c = ctx(["Dear team, ..."])
    assert run_task("write", "An email moving the meeting to Friday.", c).output == "Dear team, ..."


def test_code_runs_the_provided_tests():
    reply = "Here:\n```python\ndef add(a, b):\n    return a + b\n```"
    tests = "from solution import add\n\ndef test_add():\n    assert add(2, 3) == 5\n"
    slow_machine = TasksConfig(code_timeout_s=60)
    result = run_task("code", "Write add(a, b).", ctx([reply], tests=tests, settings=slow_machine))
    assert result.output == "def add(a, b):\n    return a + b\n"
    assert result.details["tests"]["passed"] is True


def test_code_failing_and_hanging_solutions():
    tests = "from solution import add\nassert add(2, 3) == 5\n"
    wrong = run_task("code", "add", ctx(["```python\ndef add(a, b):\n    return a - b\n```"],
                                        tests=tests, settings=TasksConfig(code_timeout_s=60)))
    assert wrong.details["tests"]["passed"] is False
    hang = run_task("code", "add", ctx(["```python\nwhile True:\n    pass\n```"], tests=tests,
                                       settings=TasksConfig(code_timeout_s=1)))
    assert hang.details["tests"]["timed_out"] is True


def test_code_tests_have_no_network():
    from appkit.tasks.sandbox import run_tests

    run = run_tests("", "import socket\nsocket.socket().connect(('127.0.0.1', 9))\n")
    assert not run.passed and "network access is disabled" in run.output


def test_qa_needs_an_app():
    with pytest.raises(TaskInputError, match="needs an App"):
        run_task("qa", "What?", ctx())


def test_qa_uses_the_rag_app(profile, embeddings, docs_dir):
    from appkit.app import App

    app = App(profile, embeddings=embeddings, chat_model=FakeChatModel(replies=["Forty thousand [1]."]))
    app.ingest([str(docs_dir)])
    result = run_task("qa", "What is the beta budget?", TaskContext(llm=None, app=app))
    assert result.output == "Forty thousand [1]."


def test_few_shot_picks_the_most_similar_examples():
    pool = [Shot("the invoice was charged twice", '{"label": "billing"}'),
            Shot("the app crashes on start", '{"label": "bug"}'),
            Shot("please add dark mode", '{"label": "feature"}')]
    assert select_shots(pool, "crashes when I start it", 1, HashingEmbeddings())[0].input == \
        "the app crashes on start"
    s = TasksConfig(labels=("billing", "bug", "feature"), shots="few-shot", shot_count=2)
    c = ctx(['{"label": "bug"}'], settings=s, pool=pool, embeddings=HashingEmbeddings())
    run_task("classify", "it crashes at start", c)
    sent = c.llm.calls[0]
    assert len(sent) == 1 + 2 * 2 + 1  # system, two worked examples, the input
    assert "crashes on start" in sent[1].content


def test_one_shot_uses_one_example():
    s = TasksConfig(shots="one-shot")
    c = ctx(["S."], settings=s, pool=[Shot("a", "b"), Shot("c", "d")])
    run_task("summarize", "Text to summarize.", c)
    assert len(c.llm.calls[0]) == 4


def test_example_pool_file(tmp_path):
    p = tmp_path / "pool.jsonl"
    p.write_text('{"input": "x", "output": {"label": "a"}}\n\n{"input": "y", "output": "b"}\n')
    assert load_pool(p) == [Shot("x", '{"label": "a"}'), Shot("y", "b")]
    p.write_text('{"input": "x"}\n')
    with pytest.raises(Exception, match="line 1"):
        load_pool(p)


def test_prompt_too_big_for_the_context():
    pool = [Shot("example " * 200, "out " * 200)] * 3
    c = ctx(settings=TasksConfig(shots="few-shot"), pool=pool, n_ctx=512)
    with pytest.raises(TaskInputError, match="leaves no room"):
        run_task("summarize", "Hello.", c)


def test_the_json_grammar_forbids_raw_control_characters_in_strings():
    pytest.importorskip("llama_cpp")
    import json

    from llama_cpp.llama_grammar import json_schema_to_gbnf

    from appkit.models.llama_cpp import _JSON_CHAR, _LOOSE_CHAR, json_schema_grammar
    from appkit.tasks.runners import ENTITY_SCHEMA

    loose = json_schema_to_gbnf(json.dumps(ENTITY_SCHEMA))
    if _LOOSE_CHAR not in loose:
        pytest.skip("llama-cpp-python's converter changed its string rule; check _JSON_CHAR")
    grammar = json_schema_grammar(ENTITY_SCHEMA)
    assert _JSON_CHAR in grammar._grammar and _LOOSE_CHAR not in grammar._grammar
