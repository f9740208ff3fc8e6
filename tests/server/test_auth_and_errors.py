"""Who may call, how much, and what a caller sees when a request is wrong: always JSON, 4xx."""

from __future__ import annotations

import hashlib

import pytest

from appkit.server.auth import KeyRing, RateLimiter, is_loopback
from appkit.testing import FakeChatModel
from tests.server.conftest import ALICE, BOB

CHAT = {"model": "appkit-rag", "messages": [{"role": "user", "content": "hello?"}]}


def error_of(response) -> dict:
    assert response.headers["content-type"].startswith("application/json")
    return response.json()["error"]


# --- keys --------------------------------------------------------------------------------------


def test_without_keys_loopback_clients_are_served(make_client) -> None:
    assert make_client().get("/v1/models").status_code == 200


def test_without_keys_other_clients_are_refused(make_client) -> None:
    response = make_client(client_host="10.0.0.5").get("/v1/models")
    assert response.status_code == 403
    assert error_of(response)["code"] == "loopback_only"


@pytest.mark.parametrize("headers, status, code", [
    ({}, 401, "missing_api_key"),
    ({"Authorization": "Bearer sk-wrong-0123456789abcdef"}, 401, "invalid_api_key"),
    ({"Authorization": "Basic " + ALICE}, 401, "missing_api_key"),
    ({"Authorization": f"Bearer {ALICE}x"}, 401, "invalid_api_key"),
    ({"Authorization": f"Bearer {ALICE}"}, 200, None),
    ({"Authorization": f"bearer {ALICE}"}, 200, None),
    ({"X-API-Key": ALICE}, 200, None),
])
def test_api_keys(make_client, headers: dict, status: int, code: str | None) -> None:
    response = make_client(keys={"alice": ALICE}).post("/v1/chat/completions", json=CHAT,
                                                       headers=headers)
    assert response.status_code == status
    if code:
        assert error_of(response)["code"] == code and error_of(response)["type"]


def test_keys_from_the_profile_can_be_hashes_and_from_the_environment(make_client) -> None:
    digest = "sha256:" + hashlib.sha256(ALICE.encode()).hexdigest()
    client = make_client(keys={"alice": digest},
                         environ={"APPKIT_API_KEYS": f"bob:{BOB}, sk-bare-0123456789abcdef"})
    for key in (ALICE, BOB, "sk-bare-0123456789abcdef"):
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {digest}"}).status_code == 401


def test_keyring_and_loopback_rules() -> None:
    ring = KeyRing.from_config(__import__("appkit.config").config.ServerConfig(
        api_keys={"a": ALICE}, api_keys_env="KEYS"), environ={"KEYS": "onlykey-0123456789abcdef"})
    assert ring.identify(ALICE) == "a" and ring.identify("") is None
    assert ring.users[1].startswith("key-")
    assert not KeyRing({})
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.0.1", "::1", "localhost"))
    assert not any(is_loopback(h) for h in ("10.0.0.1", "0.0.0.0", "testclient", "", None))


# --- rate limit --------------------------------------------------------------------------------


def test_rate_limit_per_key(make_client) -> None:
    client = make_client(keys={"alice": ALICE, "bob": BOB}, rate=3)
    alice, bob = {"Authorization": f"Bearer {ALICE}"}, {"Authorization": f"Bearer {BOB}"}
    assert [client.get("/v1/models", headers=alice).status_code for _ in range(3)] == [200] * 3
    limited = client.get("/v1/models", headers=alice)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert error_of(limited)["type"] == "rate_limit_error"
    assert client.get("/v1/models", headers=bob).status_code == 200


def test_two_workers_share_one_rate_limit(tmp_path) -> None:
    first = RateLimiter(tmp_path / "rate.sqlite", per_minute=4)
    second = RateLimiter(tmp_path / "rate.sqlite", per_minute=4)
    now = 1_000_000.0
    results = [(first if i % 2 else second).hit("alice", now) for i in range(5)]
    assert results[:4] == [None] * 4 and results[4] == pytest.approx(20.0)
    assert first.hit("alice", now + 60) is None  # a new minute


# --- malformed requests ------------------------------------------------------------------------


def test_oversize_body_is_413(make_client) -> None:
    client = make_client(max_body=2048)
    big = {"model": "appkit-rag", "messages": [{"role": "user", "content": "x" * 5000}]}
    response = client.post("/v1/chat/completions", json=big)
    assert response.status_code == 413 and error_of(response)["code"] == "request_too_large"

    def chunks():
        for _ in range(10):
            yield b" " * 1000
    streamed = client.post("/v1/chat/completions", content=chunks(),
                           headers={"Content-Type": "application/json"})
    assert streamed.status_code == 413 and error_of(streamed)["code"] == "request_too_large"
    assert client.post("/v1/chat/completions", json=CHAT).status_code == 200


@pytest.mark.parametrize("body, code, param", [
    (b'{"model": "appkit-rag", "messages": [', "invalid_json", None),
    (b"[1, 2]", "invalid_value", None),
    (b'{"messages": [{"role": "user", "content": "x"}]}', "invalid_value", "model"),
    (b'{"model": "appkit-rag", "messages": []}', "invalid_value", "messages"),
    (b'{"model": "appkit-rag", "max_tokens": -1, "messages": [{"role": "user", "content": "x"}]}',
     "invalid_value", "max_tokens"),
    (b'{"model": "appkit-rag", "messages": [{"role": "wizard", "content": "x"}]}',
     "invalid_value", "messages.0.role"),
    (b'{"model": "appkit-rag", "n": 3, "messages": [{"role": "user", "content": "x"}]}',
     "invalid_value", "n"),
])
def test_malformed_json_and_bad_fields_are_400(make_client, body: bytes, code: str,
                                               param: str | None) -> None:
    response = make_client().post("/v1/chat/completions", content=body,
                                  headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == code and error["param"] == param and error["message"]


def test_the_last_message_must_come_from_the_user(make_client) -> None:
    response = make_client().post("/v1/chat/completions", json={
        "model": "appkit-rag", "messages": [{"role": "assistant", "content": "hi"}]})
    assert response.status_code == 400 and error_of(response)["param"] == "messages"


@pytest.mark.parametrize("path, body", [
    ("/v1/chat/completions", {"model": "gpt-17", "messages": [{"role": "user", "content": "x"}]}),
    ("/v1/chat/completions", {"model": "all-minilm-l6-v2",
                              "messages": [{"role": "user", "content": "x"}]}),
    ("/v1/embeddings", {"model": "text-embedding-3-large", "input": "x"}),
])
def test_unknown_models_are_404(make_client, path: str, body: dict) -> None:
    response = make_client().post(path, json=body)
    assert response.status_code == 404
    assert error_of(response)["code"] == "model_not_found" and error_of(response)["param"] == "model"


def test_unknown_routes_and_methods(make_client) -> None:
    client = make_client()
    assert error_of(client.get("/v2/everything"))["code"] == "not_found"
    response = client.get("/v1/chat/completions")
    assert response.status_code == 405 and error_of(response)["code"] == "method_not_allowed"


class Exploding(FakeChatModel):
    def _stream(self, messages, stop=None, run_manager=None, **kwargs):
        yield from super()._stream(messages, stop, run_manager, **kwargs)
        raise RuntimeError("the GPU melted")


def test_server_errors_are_json_and_do_not_leak_details(make_client) -> None:
    client = make_client(chat_models={"boom": Exploding(default="partial answer")})
    request = {"model": "boom", "messages": [{"role": "user", "content": "x"}]}
    response = client.post("/v1/chat/completions", json=request)
    assert response.status_code == 500
    assert error_of(response)["type"] == "server_error"
    assert "melted" not in response.text
    with client.stream("POST", "/v1/chat/completions", json={**request, "stream": True}) as r:
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert r.status_code == 200 and lines[-1] == "data: [DONE]"
    assert '"type": "server_error"' in lines[-2] and "partial" in "".join(lines)


def test_the_key_is_checked_before_the_body_is_read(make_client) -> None:
    client = make_client(keys={"alice": ALICE}, max_body=2048)
    for body in (b"{not json", b"x" * 5000):
        response = client.post("/v1/chat/completions", content=body,
                               headers={"Content-Type": "application/json"})
        assert response.status_code == 401 and error_of(response)["code"] == "missing_api_key"
