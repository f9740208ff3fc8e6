"""``GET /v1/tasks`` and ``POST /v1/tasks/{task}``, in process, with fake models."""

from __future__ import annotations

import json

import pytest

from appkit.config import TasksConfig
from appkit.testing import FakeChatModel
from tests.server.conftest import ALICE

ENTITIES = {"entities": [{"text": "Ada Lovelace", "type": "PERSON"}]}


class FakeTagger:
    """Stands in for a fine-tuned encoder (``EncoderTokenClassifier``): no torch needed."""

    role = "token-classifier"
    labels = ("PERSON",)

    def predict(self, texts):  # noqa: ANN001, ANN201
        return [ENTITIES for _ in texts]


def error_of(response) -> dict:  # noqa: ANN001
    return response.json()["error"]


def test_the_task_list(make_client) -> None:
    data = make_client().get("/v1/tasks").json()["data"]
    by_id = {t["id"]: t for t in data}
    assert list(by_id)[:3] == ["qa", "summarize", "translate"]
    assert by_id["write"]["metrics"] == ["rubric"]
    assert "token-classifier" in by_id["extract"]["roles"]


def test_summarize_with_the_profile_model(make_client) -> None:
    llm = FakeChatModel(replies=["A short summary."])
    body = make_client(chat_model=llm).post(
        "/v1/tasks/summarize", json={"input": "A long report about many things."}).json()
    assert body["object"] == "task.result" and body["task"] == "summarize"
    assert body["output"] == "A short summary." and body["calls"] == 1
    assert body["model"] == "qwen2.5-coder-0.5b"  # the profile's chat model
    assert "A long report" in llm.calls[0][-1].text


def test_classify_and_translate_take_their_options_from_the_request(make_client) -> None:
    llm = FakeChatModel(replies=['{"label": "bug"}', "Bonjour."])
    client = make_client(chat_model=llm)
    body = client.post("/v1/tasks/classify", json={"input": "The app crashes.",
                                                    "labels": ["billing", "bug"]}).json()
    assert body["output"] == "bug" and body["details"]["labels"] == ["billing", "bug"]
    body = client.post("/v1/tasks/translate", json={"input": "Hello.", "source_lang": "en",
                                                     "target_lang": "fr"}).json()
    assert body["output"] == "Bonjour." and body["details"]["target"] == "fr"
    assert "French" in llm.calls[1][0].text


def test_extract_with_a_named_model_and_a_schema(make_client) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}},
              "required": ["city"]}
    client = make_client(chat_models={"json": FakeChatModel(replies=['{"city": "Rome"}'])})
    body = client.post("/v1/tasks/extract", json={"input": "I live in Rome.", "model": "json",
                                                   "schema": schema}).json()
    assert body["output"] == {"city": "Rome"} and body["model"] == "json"


def test_a_fine_tuned_tagger_serves_extract_only(make_client) -> None:
    client = make_client(chat_models={"ner": FakeTagger()})
    body = client.post("/v1/tasks/extract", json={"input": "Ada Lovelace wrote.",
                                                   "model": "ner"}).json()
    assert body["output"] == ENTITIES and body["details"]["encoder"] is True
    response = client.post("/v1/tasks/write", json={"input": "Write.", "model": "ner"})
    assert response.status_code == 400 and error_of(response)["param"] == "model"
    assert "is a token-classifier model; write accepts chat models" in error_of(response)["message"]


@pytest.mark.parametrize("task, body, status, code, param, words", [
    ("poem", {"input": "x"}, 400, "unknown_task", "task", "unknown task 'poem'; known tasks: qa"),
    ("summarize", {"input": "   "}, 400, "invalid_task_input", "input", "is empty"),
    ("summarize", {"input": ""}, 400, "invalid_value", "input", "at least 1 character"),
    ("summarize", {"text": "x"}, 400, "invalid_value", "input", "Field required"),
    ("classify", {"input": "x"}, 400, "invalid_task_input", "input", "classify needs labels"),
    ("translate", {"input": "x", "target_lang": "xx"}, 400, "invalid_task_input", "input",
     "xx"),
    ("extract", {"input": "x", "schema": {"type": "array"}}, 400, None, "schema",
     "must describe an object"),
    ("code", {"input": "x", "tests": "assert True"}, 400, None, "tests", "does not run code"),
    ("write", {"input": "x", "model": "no-such-model"}, 404, "model_not_found", "model",
     "unknown model 'no-such-model'"),
    ("write", {"input": "x", "max_tokens": 0}, 400, "invalid_value", "max_tokens", ""),
])
def test_bad_requests_are_clear_400s(make_client, task, body, status, code, param,
                                     words) -> None:
    response = make_client().post(f"/v1/tasks/{task}", json=body)
    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["param"] == param and words in error["message"]
    if code:
        assert error["code"] == code


def test_a_reply_that_does_not_fit_is_422(make_client) -> None:
    client = make_client(chat_model=FakeChatModel(default="not json at all"))
    response = client.post("/v1/tasks/extract", json={"input": "Ada Lovelace wrote."})
    assert response.status_code == 422 and error_of(response)["code"] == "output_schema_mismatch"


def test_keys_and_rate_limits_apply(make_client) -> None:
    client = make_client(keys={"alice": ALICE}, rate=2,
                         chat_model=FakeChatModel(default="Short."))
    task = {"input": "A long report."}
    assert client.post("/v1/tasks/summarize", json=task).status_code == 401
    alice = {"Authorization": f"Bearer {ALICE}"}
    assert client.post("/v1/tasks/summarize", json=task, headers=alice).json()["output"] == "Short."
    assert client.get("/v1/tasks", headers=alice).status_code == 200
    limited = client.post("/v1/tasks/summarize", json=task, headers=alice)
    assert limited.status_code == 429


def test_few_shot_uses_the_profile_pool(make_client, tmp_path) -> None:
    pool = tmp_path / "pool.jsonl"
    pool.write_text(json.dumps({"input": "The invoice is wrong.", "output": '{"label": "billing"}'})
                    + "\n", encoding="utf-8")
    llm = FakeChatModel(replies=['{"label": "bug"}'])
    client = make_client(chat_model=llm, profile_changes={"tasks": TasksConfig(
        labels=("billing", "bug"), shots="one-shot", examples=str(pool))})
    assert client.post("/v1/tasks/classify", json={"input": "It crashes."}).json()["output"] == "bug"
    assert "The invoice is wrong." in llm.calls[0][1].text
