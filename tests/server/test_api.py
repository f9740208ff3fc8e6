"""The endpoints, in process, with fake models."""

from __future__ import annotations

import array
import base64
import json
from pathlib import Path

import pytest

from appkit.testing import FakeChatModel
from appkit.testing.tools import FakeToolCallingModel

BETA = "# Beta\n\n## Budget\n\nThe beta budget is forty thousand euros for the third quarter.\n"


def ingest(client, files: dict[str, str], **headers):
    return client.post("/ingest", json={"files": [{"name": n, "content": c}
                                                  for n, c in files.items()]}, headers=headers)


def sse_events(response) -> list:
    events = []
    for line in response.iter_lines():
        if line.startswith("data: "):
            payload = line[len("data: "):]
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def test_health_needs_no_key(make_client) -> None:
    client = make_client(keys={"alice": "sk-alice-0123456789abcdef"})
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["auth"] == "api-keys"
    assert body["store"] == "chroma-embedded"


def test_models_lists_rag_agent_and_catalogue_models(make_client) -> None:
    data = make_client(chat_models={"echo": FakeChatModel()}).get("/v1/models").json()
    ids = [m["id"] for m in data["data"]]
    assert data["object"] == "list" and ids[:3] == ["appkit-rag", "appkit-agent", "echo"]
    assert "qwen2.5-coder-0.5b" in ids


def test_rag_answer_with_citations(make_client) -> None:
    client = make_client()
    report = ingest(client, {"beta.md": BETA}).json()
    assert report["added"] == ["beta.md"] and report["report"]["added"] == 1
    body = client.post("/v1/chat/completions", json={
        "model": "appkit-rag", "messages": [{"role": "user", "content": "What is the beta budget?"}],
    }).json()
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"] == {
        "role": "assistant", "content": "The beta budget is forty thousand euros [1]."}
    assert body["choices"][0]["finish_reason"] == "stop"
    assert set(body["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    citation = body["appkit"]["citations"][0]
    assert citation["source"] == "beta.md" and citation["cited"] is True
    assert "/" not in citation["source"]  # server paths are not shown to callers


def test_rag_streams_server_sent_events(make_client) -> None:
    client = make_client()
    ingest(client, {"beta.md": BETA})
    with client.stream("POST", "/v1/chat/completions", json={
            "model": "appkit-rag", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": "What is the beta budget?"}]}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = sse_events(response)
    assert events[-1] == "[DONE]"
    chunks = events[:-1]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "The beta budget is forty thousand euros [1]."
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) > 3
    final = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]][0]
    assert final["appkit"]["citations"][0]["source"] == "beta.md"
    assert chunks[-1]["choices"] == [] and "total_tokens" in chunks[-1]["usage"]
    assert len({c["id"] for c in chunks}) == 1


def test_history_and_generation_settings_reach_the_chain(make_client) -> None:
    llm = FakeChatModel(replies=["What is the beta budget?", "Forty thousand [1]."])
    client = make_client(chat_model=llm)
    ingest(client, {"beta.md": BETA})
    body = client.post("/v1/chat/completions", json={
        "model": "appkit-rag", "max_tokens": 50, "temperature": 0, "messages": [
            {"role": "system", "content": "ignored: the profile's prompt is used"},
            {"role": "user", "content": "Tell me about beta."},
            {"role": "assistant", "content": "Beta is a project."},
            {"role": "user", "content": "And its budget?"}]}).json()
    assert body["appkit"]["standalone_question"] == "What is the beta budget?"
    assert body["choices"][0]["message"]["content"] == "Forty thousand [1]."


def test_nothing_found_is_said_without_calling_the_model(make_client) -> None:
    llm = FakeChatModel()
    body = make_client(chat_model=llm).post("/v1/chat/completions", json={
        "model": "appkit-rag", "messages": [{"role": "user", "content": "anything?"}]}).json()
    assert body["appkit"]["found"] is False and llm.calls == []


def test_a_named_model_answers_the_messages_as_they_are(make_client) -> None:
    echo = FakeChatModel(replies=["Bonjour."])
    client = make_client(chat_models={"echo": echo})
    body = client.post("/v1/chat/completions", json={"model": "echo", "messages": [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": [{"type": "text", "text": "Hello"}]}]}).json()
    assert body["choices"][0]["message"]["content"] == "Bonjour." and body["model"] == "echo"
    assert [m.content for m in echo.calls[0]] == ["Answer in French.", "Hello"]


def test_the_agent_model_returns_its_trace(make_client) -> None:
    llm = FakeToolCallingModel(script=[{"name": "calculator", "args": {"expression": "6*7"}},
                                       "6 × 7 = 42."])
    body = make_client(chat_model=llm).post("/v1/chat/completions", json={
        "model": "appkit-agent", "messages": [{"role": "user", "content": "6 times 7?"}]}).json()
    assert body["choices"][0]["message"]["content"] == "6 × 7 = 42."
    steps = body["appkit"]["steps"]
    assert [(s["kind"], s["name"], s["output"]) for s in steps][1] == ("tool", "calculator", "42")
    assert body["appkit"]["stopped"] == "answer"


@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_embeddings(make_client, embeddings, encoding: str) -> None:
    body = make_client().post("/v1/embeddings", json={
        "model": "appkit-embeddings", "input": ["alpha beta", "gamma"],
        "encoding_format": encoding}).json()
    assert [d["index"] for d in body["data"]] == [0, 1]
    vector = body["data"][0]["embedding"]
    if encoding == "base64":
        vector = list(array.array("f", base64.b64decode(vector)))
    assert vector == pytest.approx(embeddings.embed_query("alpha beta"), abs=1e-6)
    assert body["usage"]["prompt_tokens"] == 3


def test_embeddings_by_the_profile_model_name(make_client) -> None:
    body = make_client().post("/v1/embeddings", json={"model": "all-minilm-l6-v2", "input": "x"})
    assert body.status_code == 200 and len(body.json()["data"]) == 1


def test_search(make_client) -> None:
    client = make_client()
    ingest(client, {"beta.md": BETA, "gamma.txt": "Gamma is the data logger code name."})
    results = client.post("/search", json={"query": "beta budget", "k": 1}).json()["results"]
    assert len(results) == 1 and results[0]["source"] == "beta.md"
    assert results[0]["heading"] and results[0]["relevance"] > 0


def test_ingest_replaces_deletes_and_reads_base64(make_client) -> None:
    client = make_client()
    assert ingest(client, {"a.txt": "apples are red"}).json()["report"]["added"] == 1
    changed = ingest(client, {"a.txt": "apples are green"}).json()["report"]
    assert changed["updated"] == 1
    body = client.post("/ingest", json={"files": [{
        "name": "b.md", "content_base64": base64.b64encode(b"# B\n\nbananas").decode()}]}).json()
    assert body["documents"] == ["a.txt", "b.md"]
    gone = client.post("/ingest", json={"delete": ["a.txt"]}).json()
    assert gone["deleted"] == ["a.txt"] and gone["report"]["deleted"] == 1
    texts = [r["text"] for r in client.post("/search", json={"query": "apples"}).json()["results"]]
    assert not any("apples" in t for t in texts)


@pytest.mark.parametrize("file, message", [
    ({"name": "../evil.txt", "content": "x"}, "not a plain file name"),
    ({"name": "sub/evil.txt", "content": "x"}, "not a plain file name"),
    ({"name": ".bashrc", "content": "x"}, "not a plain file name"),
    ({"name": "tool.exe", "content": "x"}, "unsupported file type"),
    ({"name": "a.txt"}, "exactly one of"),
    ({"name": "a.txt", "content": "x", "content_base64": "eA=="}, "exactly one of"),
    ({"name": "a.txt", "content_base64": "***"}, "not valid base64"),
])
def test_ingest_refuses_unsafe_or_unreadable_files(make_client, file: dict, message: str,
                                                   tmp_path: Path) -> None:
    response = make_client().post("/ingest", json={"files": [file]})
    assert response.status_code == 400 and message in response.json()["error"]["message"]
    assert not (tmp_path / "evil.txt").exists()


def test_an_empty_ingest_is_a_400(make_client) -> None:
    response = make_client().post("/ingest", json={})
    assert response.status_code == 400 and "nothing to do" in response.json()["error"]["message"]


CALC_TOOL = {"type": "function", "function": {
    "name": "calculator", "description": "Evaluate arithmetic.",
    "parameters": {"type": "object", "properties": {"expression": {"type": "string"}},
                   "required": ["expression"]}}}


def test_catalogue_models_take_openai_tools_and_tool_results(make_client) -> None:
    llm = FakeToolCallingModel(script=[{"name": "calculator", "args": {"expression": "6*7"}},
                                       "It is 42."])
    client = make_client(chat_models={"tooly": llm})
    first = client.post("/v1/chat/completions", json={
        "model": "tooly", "tools": [CALC_TOOL], "tool_choice": "auto",
        "messages": [{"role": "user", "content": "6*7?"}]}).json()
    choice = first["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["function"] == {"name": "calculator", "arguments": '{"expression": "6*7"}'}
    assert llm.bound_tools == ["calculator"]
    second = client.post("/v1/chat/completions", json={
        "model": "tooly", "tools": [CALC_TOOL], "messages": [
            {"role": "user", "content": "6*7?"}, choice["message"],
            {"role": "tool", "tool_call_id": call["id"], "content": "42"}]}).json()
    assert second["choices"][0]["message"]["content"] == "It is 42."
    sent = llm.calls[1]
    assert sent[1].tool_calls[0]["args"] == {"expression": "6*7"}
    assert sent[2].content == "42" and sent[2].tool_call_id == call["id"]


def test_streamed_tool_calls(make_client) -> None:
    llm = FakeToolCallingModel(script=[{"name": "calculator", "args": {"expression": "1+1"}}])
    client = make_client(chat_models={"tooly": llm})
    with client.stream("POST", "/v1/chat/completions", json={
            "model": "tooly", "stream": True, "tools": [CALC_TOOL],
            "messages": [{"role": "user", "content": "1+1?"}]}) as response:
        events = sse_events(response)[:-1]
    deltas = [e["choices"][0]["delta"] for e in events]
    assert deltas[-2]["tool_calls"][0]["function"]["name"] == "calculator"
    assert events[-1]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("body, param", [
    ({"model": "appkit-rag", "tools": [CALC_TOOL]}, "tools"),
    ({"model": "echo", "tools": [CALC_TOOL]}, "tools"),
    ({"model": "echo", "messages": [{"role": "tool", "content": "42"}]}, "messages.0.tool_call_id"),
    ({"model": "echo", "messages": [{"role": "assistant", "content": "",
                                     "tool_calls": [{"id": "x"}]}]}, "messages.0.tool_calls"),
])
def test_tool_requests_that_cannot_work_are_400(make_client, body: dict, param: str) -> None:
    body = {"messages": [{"role": "user", "content": "x"}], **body}
    if body["messages"][-1]["role"] != "user":
        body["messages"].append({"role": "user", "content": "x"})
    response = make_client(chat_models={"echo": FakeChatModel()}).post("/v1/chat/completions",
                                                                       json=body)
    assert response.status_code == 400 and response.json()["error"]["param"] == param
