"""Instruction rows: parsing with line-numbered errors, splits, mixtures, prompts and tokens."""

from __future__ import annotations

import pytest

from appkit.config import PromptConfig
from finetune.data import (
    DataError, Example, data_hash, encode_example, mix, parse_rows, read_rows, render_messages,
    split_heldout)
from tests.finetune.conftest import write_jsonl


def test_rows_in_instruction_and_testset_format(tmp_path):
    path = write_jsonl(tmp_path / "d.jsonl", [
        {"instruction": "Who?", "input": "Ada wrote it.", "output": "Ada"},
        {"instruction": "Sum up", "context": "Long text", "output": "Short", "task": "summarize"},
        {"question": "When?", "reference": "1843", "reference_contexts": ["It was 1843."]},
    ])
    rows, problems = read_rows(path)
    assert problems == []
    assert [r.task for r in rows] == ["qa", "summarize", "qa"]
    assert rows[1].input == "Long text"
    assert rows[2] == Example("When?", "1843", input="It was 1843.")


def test_malformed_rows_are_reported_by_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [
        {"instruction": "ok", "output": "fine"}, "{not json", {"instruction": "x"},
        {"instruction": "y", "output": 3}, "[1, 2]",
    ])
    with pytest.raises(DataError, match=r"bad\.jsonl line 2: not valid JSON"):
        read_rows(path)
    rows, problems = read_rows(path, on_error="skip")
    assert len(rows) == 1
    assert [p.split(": ", 1)[0].rsplit(" ", 1)[-1] for p in problems] == ["2", "3", "4", "5"]
    assert "'output' is missing or empty" in problems[1]
    assert "'output' must be a string" in problems[2]


def test_missing_file_names_it(tmp_path):
    with pytest.raises(DataError, match="no such data file"):
        read_rows(tmp_path / "nope.jsonl")


def test_heldout_split_keeps_groups_apart_and_is_made_per_task():
    rows = [Example(f"q{i}", "a", group=f"article{i % 5}") for i in range(50)]
    rows += [Example(f"s{i}", "b", task="summarize") for i in range(20)]
    train, held = split_heldout(rows, 0.2, seed=1)
    assert len(train) + len(held) == 70
    assert not {r.group for r in train if r.group} & {r.group for r in held if r.group}
    assert {r.task for r in held} == {"qa", "summarize"}


def test_too_little_data_for_the_split_is_an_error():
    with pytest.raises(DataError, match="needs at least 2"):
        split_heldout([Example("q", "a")], 0.1, source="one.jsonl")
    rows = [Example(f"q{i}", "a") for i in range(5)]
    with pytest.raises(DataError, match="at least 8 are needed"):
        split_heldout(rows, 0.2, min_train=8, source="five.jsonl")


def test_mixture_follows_weights_and_keeps_the_total():
    rows = [Example(f"q{i}", "a") for i in range(60)]
    rows += [Example(f"s{i}", "b", task="summarize") for i in range(20)]
    out = mix(rows, {"qa": 1, "summarize": 3}, seed=0)
    counts = {t: sum(r.task == t for r in out) for t in ("qa", "summarize")}
    assert counts == {"qa": 20, "summarize": 60}
    with pytest.raises(DataError, match="task 'code', which has no rows"):
        mix(rows, {"code": 1})


def test_data_hash_changes_with_the_rows():
    a = [Example("q", "a")]
    assert data_hash(a) == data_hash(list(a))
    assert data_hash(a) != data_hash([Example("q", "b")])


def test_qa_rows_render_as_the_apps_rag_prompt():
    prompt = PromptConfig(system="SYS", template="Sources:\n{context}\n\nQ: {question}")
    msgs = render_messages(Example("Who?", "Ada", input="Ada wrote it."), prompt)
    assert [m.type for m in msgs] == ["system", "human"]
    assert msgs[0].content == "SYS"
    assert msgs[1].content.startswith("Sources:\n[1] (") and msgs[1].content.endswith("Q: Who?")
    plain = render_messages(Example("Translate", "Bonjour", input="Hello", task="translate"))
    assert [m.content for m in plain] == ["Translate\n\nHello"]


@pytest.mark.parametrize("chat_template", [False, True])
def test_only_the_answer_and_end_token_are_trained(char_tokenizer, chat_template):
    row = Example("Who?", "Ada", input="Ada wrote it.")
    enc = encode_example(row, char_tokenizer, chat_template=chat_template, max_tokens=512)
    trained = [t for t in enc.labels if t != -100]
    answer = char_tokenizer(("Ada" if chat_template else " Ada"), add_special_tokens=False).input_ids
    assert trained == answer + [char_tokenizer.eos_token_id]
    assert enc.input_ids[-len(trained):] == trained
    assert not enc.truncated


def test_long_prompts_are_cut_from_the_left(char_tokenizer):
    row = Example("Who?", "Ada", input="x" * 1000)
    enc = encode_example(row, char_tokenizer, chat_template=False, max_tokens=128)
    assert len(enc.input_ids) == 128 and enc.truncated
    assert enc.input_ids[0] == char_tokenizer.bos_token_id
    prompt_ids = enc.input_ids[: len(enc.input_ids) - 5]  # " Ada" and the end token follow
    cue = char_tokenizer("Question: Who?", add_special_tokens=False).input_ids
    assert any(prompt_ids[i:i + len(cue)] == cue for i in range(len(prompt_ids)))
    end = char_tokenizer("\nAnswer:", add_special_tokens=False).input_ids
    assert prompt_ids[-len(end):] == end


def test_parse_rows_skips_blank_lines():
    rows, problems = parse_rows(["", '{"instruction": "a", "output": "b"}', "   "])
    assert len(rows) == 1 and problems == []


def test_synthetic_questions_keep_only_answers_found_in_the_passage():
    from appkit.testing import FakeChatModel
    from finetune.data import synthetic_rows

    chunks = [("a.txt", "The beta budget is forty thousand euros."),
              ("b.txt", "Gamma is the code name of the logger."),
              ("c.txt", "Two engineers work on beta.")]
    model = FakeChatModel(replies=[
        'Sure: {"question": "What is the beta budget?", "answer": "forty thousand euros"}',
        '{"question": "What is gamma?", "answer": "a rocket"}',
        "no JSON here"])
    rows = synthetic_rows(chunks, model, log=lambda s: None)
    assert rows == [Example("What is the beta budget?", "forty thousand euros",
                            input=chunks[0][1], group="a.txt")]
