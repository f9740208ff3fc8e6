"""Chroma in client/server mode (a real ``chroma run`` on 127.0.0.1), and two server workers
sharing it."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from appkit.app import App
from appkit.config import Profile, ServerConfig, StoreConfig, save_profile
from appkit.testing import FakeChatModel
from tests.helpers import REPO, free_port, wait_http
from tests.server.conftest import ALICE, BOB

pytestmark = [pytest.mark.integration, pytest.mark.allow_hosts(["127.0.0.1"])]

def server_profile(profile: Profile, chroma: tuple[str, int], **server) -> Profile:
    host, port = chroma
    store = StoreConfig(path=profile.store.path, host=host, port=port,
                        collection=f"t{uuid.uuid4().hex[:10]}")
    return dataclasses.replace(profile, store=store, server=ServerConfig(**server))


def test_the_same_profile_works_against_a_chroma_server(profile, embeddings, docs_dir, chroma) -> None:
    import chromadb

    p = server_profile(profile, chroma)
    app = App(p, embeddings=embeddings, chat_model=FakeChatModel(default="Forty thousand [1]."))
    report = app.ingest([docs_dir])
    assert report.added == 3
    answer = app.ask("What is the beta budget?")
    assert answer.text == "Forty thousand [1]." and "beta" in answer.citations[0].source
    remote = chromadb.HttpClient(host=chroma[0], port=chroma[1])
    assert remote.get_collection(p.store.collection).count() == app.store.count() > 0
    # A second app (another process, say) sees the same chunks without ingesting.
    other = App(p, embeddings=embeddings)
    assert other.store.search("beta budget", 1)[0].metadata["source"].endswith("beta.md")


def test_two_workers_behind_one_chroma_server(profile, chroma, tmp_path: Path) -> None:
    import psutil

    carol_key = "sk-carol-0123456789abcdef"
    p = server_profile(profile, chroma, api_keys={"alice": ALICE, "bob": BOB, "carol": carol_key},
                       rate_limit_per_minute=40)
    path = save_profile(p, tmp_path / "appkit.toml")
    port = free_port()
    env = {**os.environ, "APPKIT_PROFILE": str(path), "PYTHONPATH": str(REPO),
           "ANONYMIZED_TELEMETRY": "False"}
    log = open(tmp_path / "uvicorn.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "tests.server.fake_app:app", "--host",
         "127.0.0.1", "--port", str(port), "--workers", "2", "--log-level", "warning"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    alice, bob = {"Authorization": f"Bearer {ALICE}"}, {"Authorization": f"Bearer {BOB}"}
    try:
        wait_http(f"{base}/health", timeout=60, proc=proc)
        workers = [c for c in psutil.Process(proc.pid).children()
                   if "spawn_main" in " ".join(c.cmdline())]
        assert len(workers) == 2

        def fresh() -> httpx.Client:  # a new connection may land on either worker
            return httpx.Client(base_url=base, timeout=30)

        with fresh() as c:
            r = c.post("/ingest", headers=alice, json={"files": [
                {"name": "alpha.txt", "content": "The launch code of project alpha is 4711."}]})
            assert r.status_code == 200, r.text
        for _ in range(8):
            with fresh() as c:
                hits = c.post("/search", headers=alice, json={"query": "launch code"}).json()
                assert [h["source"] for h in hits["results"]] == ["alpha.txt"]
                assert c.post("/search", headers=bob, json={"query": "launch code"}).json()[
                    "results"] == []
                chat = c.post("/v1/chat/completions", headers=alice, json={
                    "model": "appkit-rag", "messages": [{"role": "user", "content": "code?"}]})
                assert chat.json()["appkit"]["citations"][0]["source"] == "alpha.txt"
        if time.time() % 60 > 35:  # the limit counts per clock minute: start a fresh one
            time.sleep(60.5 - time.time() % 60)
        statuses = []
        for _ in range(45):  # the limit is 40 per minute for carol, whichever worker answers
            with fresh() as c:
                statuses.append(c.get("/v1/models", headers={
                    "Authorization": f"Bearer {carol_key}"}).status_code)
        assert statuses.count(429) == 5 and statuses[:40] == [200] * 40, statuses
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def test_serve_refuses_two_workers_on_embedded_chroma_and_open_hosts_without_keys(
        tmp_path: Path, capsys) -> None:
    from appkit.cli import main

    path = save_profile(Profile(), tmp_path / "appkit.toml")
    assert main(["serve", "--profile", str(path), "--workers", "2"]) == 2
    assert "need a Chroma server" in capsys.readouterr().err
    assert main(["serve", "--profile", str(path), "--host", "0.0.0.0"]) == 2
    assert "without API keys" in capsys.readouterr().err
