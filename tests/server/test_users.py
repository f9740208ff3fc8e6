"""Per-key collections: one user's documents are never retrieved for another."""

from __future__ import annotations

from pathlib import Path

from appkit.config import Profile
from appkit.server.users import user_profile
from appkit.testing import FakeChatModel
from appkit.testing.tools import FakeToolCallingModel
from tests.server.conftest import ALICE, BOB

AS_ALICE = {"Authorization": f"Bearer {ALICE}"}
AS_BOB = {"Authorization": f"Bearer {BOB}"}
SECRET = "The launch code of project alpha is 4711-ZEBRA."


def upload(client, headers, name, text):
    response = client.post("/ingest", headers=headers,
                           json={"files": [{"name": name, "content": text}]})
    assert response.status_code == 200, response.text
    return response.json()


def prompts(llm) -> str:
    return "\n".join(m.text for call in llm.calls for m in call)


def test_each_key_searches_only_its_own_documents(make_client) -> None:
    llm = FakeChatModel(default="I do not know.")
    client = make_client(keys={"alice": ALICE, "bob": BOB}, chat_model=llm)
    upload(client, AS_ALICE, "alpha.txt", SECRET)
    upload(client, AS_BOB, "cheese.txt", "Bob's notes: the launch of the cheese shop is in May.")

    bob_hits = client.post("/search", headers=AS_BOB, json={"query": "launch code alpha 4711"})
    assert all("4711" not in r["text"] for r in bob_hits.json()["results"])
    assert [r["source"] for r in bob_hits.json()["results"]] == ["cheese.txt"]

    body = client.post("/v1/chat/completions", headers=AS_BOB, json={
        "model": "appkit-rag",
        "messages": [{"role": "user", "content": "What is the launch code of project alpha?"}],
    }).json()
    assert "4711" not in prompts(llm)
    assert {c["source"] for c in body["appkit"]["citations"]} <= {"cheese.txt"}

    alice_hits = client.post("/search", headers=AS_ALICE, json={"query": "launch code"}).json()
    assert [r["source"] for r in alice_hits["results"]] == ["alpha.txt"]


def test_the_agent_searches_the_callers_documents_only(make_client) -> None:
    llm = FakeToolCallingModel(script=[
        {"name": "search_documents", "args": {"query": "launch code"}}, "Nothing found."])
    client = make_client(keys={"alice": ALICE, "bob": BOB}, chat_model=llm)
    upload(client, AS_ALICE, "alpha.txt", SECRET)
    upload(client, AS_BOB, "cheese.txt", "Cheese shop opening in May.")
    body = client.post("/v1/chat/completions", headers=AS_BOB, json={
        "model": "appkit-agent", "messages": [{"role": "user", "content": "launch code?"}]}).json()
    assert "4711" not in prompts(llm)
    assert {c["source"] for c in body["appkit"]["citations"]} <= {"cheese.txt"}


def test_users_get_separate_collections_and_folders(tmp_path) -> None:
    base = Profile(source=tmp_path / "appkit.toml")
    alice, bob = user_profile(base, "alice"), user_profile(base, "bob")
    assert len({base.store.collection, alice.store.collection, bob.store.collection}) == 3
    assert alice.data_dir != bob.data_dir and alice.data_dir.is_relative_to(base.data_dir)
    assert user_profile(base, "local") is base
    assert user_profile(base, "a_b").store.collection != user_profile(base, "a-b").store.collection


def test_read_document_reads_only_the_callers_uploads(make_client, tmp_path) -> None:
    import dataclasses

    from appkit.config import DocumentsConfig, ToolsConfig

    shared = tmp_path / "shared-docs"
    shared.mkdir()
    (shared / "board.txt").write_text("Board minutes: merger with Initech.", encoding="utf-8")

    paths = {"alpha": "alpha.txt", "board": str(shared / "board.txt")}

    def read(name):
        return lambda messages: {"name": "read_document", "args": {"path": paths[name]}}

    llm = FakeToolCallingModel(script=[read("alpha"), "ok", read("bob"), "ok", read("board"),
                                       "ok"])
    client = make_client(keys={"alice": ALICE, "bob": BOB}, chat_model=llm, profile_changes={
        "documents": DocumentsConfig(paths=(str(shared),)),
        "tools": ToolsConfig(enabled=("read_document",))})
    upload(client, AS_ALICE, "alpha.txt", SECRET)
    upload(client, AS_BOB, "b.txt", "Bob's private note.")
    paths["bob"] = str(client.app.state.appkit.users.upload_dir("bob") / "b.txt")
    assert Path(paths["bob"]).is_file()

    def ask() -> list[dict]:
        return client.post("/v1/chat/completions", headers=AS_ALICE, json={
            "model": "appkit-agent", "messages": [{"role": "user", "content": "read it"}]}
        ).json()["appkit"]["steps"]

    assert "4711-ZEBRA" in ask()[1]["output"]
    for steps in (ask(), ask()):
        assert steps[1]["status"] == "error"
        assert "not a file inside the document folders" in steps[1]["output"]
    assert "Initech" not in prompts(llm) and "private note" not in prompts(llm)
    assert dataclasses.is_dataclass(user_profile(Profile(), "alice").documents)
