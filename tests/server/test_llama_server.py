"""Chat and embeddings from an OpenAI-compatible endpoint: a real ``python -m llama_cpp.server``
on 127.0.0.1 serving the packaged SmolLM2 (one process serves both: mean-pooled embeddings)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from appkit.app import App
from appkit.config import ChatConfig, EmbeddingConfig, GenerationConfig, Profile
from appkit.types import Answer
from tests.helpers import free_port, wait_http

pytestmark = [pytest.mark.slow, pytest.mark.allow_hosts(["127.0.0.1"])]


@pytest.fixture(scope="module")
def llama_server(smollm_path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("llama-server") / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", smollm_path, "--model_alias",
             "smollm", "--embedding", "true", "--kv_overrides", "llama.pooling_type=int:1",
             "--n_ctx", "2048", "--n_threads", "1", "--host", "127.0.0.1", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(f"http://127.0.0.1:{port}/v1/models", timeout=120, proc=proc)
            yield f"http://127.0.0.1:{port}/v1#smollm"
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def test_ingest_and_ask_through_the_endpoint(llama_server: str, profile: Profile,
                                             docs_dir: Path) -> None:
    p = dataclasses.replace(
        profile, embedding=EmbeddingConfig(model=llama_server, batch_size=8),
        chat=ChatConfig(model=llama_server, generation=GenerationConfig(max_tokens=12)))
    app = App(p)
    assert app.embeddings.identity == "openai:smollm"
    assert app.ingest([docs_dir]).chunks_embedded > 0
    assert app.store.collection.metadata["appkit:embedder"] == "openai:smollm"
    hits = app.store.search("beta budget", 3)
    assert len(hits) == 3 and len(app.embeddings.embed_query("x")) == 576

    pieces = list(app.stream("What is the beta budget?"))
    answer = pieces[-1]
    assert isinstance(answer, Answer) and answer.text and answer.citations
    assert len(pieces) > 2  # streamed (llama_cpp.server sends no usage while streaming)


def test_the_chat_model_alone(llama_server: str) -> None:
    from appkit.models import make_chat_model

    llm = make_chat_model(Profile(chat=ChatConfig(model=llama_server)), max_tokens=8)
    reply = llm.invoke("Say hello.")
    assert reply.text and reply.usage_metadata["output_tokens"] > 0
