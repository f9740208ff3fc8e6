"""Shared fixtures.

Unit tests (the default run) use the fakes from :mod:`appkit.testing`, a temporary profile and a
temporary model cache, and never touch the network (pytest-socket blocks it). Tests marked ``slow``
use the real packaged models; they keep the real model cache (``$APPKIT_CACHE`` or
``~/.cache/appkit``) so the multi-part Qwen file is assembled once per machine, not once per run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from appkit.config import Profile, RetrievalConfig, StoreConfig
from appkit.testing import FakeChatModel, HashingEmbeddings
from tests.helpers import EXAMPLE_DOCS, free_port, wait_http


def pytest_configure(config: pytest.Config) -> None:
    # The langchain-tests suites define unmarked ``async def`` tests; pytest-asyncio's default
    # strict mode would fail them as unsupported, so run them in auto mode unless told otherwise.
    if not config.getoption("asyncio_mode", None) and config.getini("asyncio_mode") == "strict":
        config.option.asyncio_mode = "auto"
    # The standard suites' ``test_init_time`` is a benchmark: run it once, without the report,
    # unless benchmarks are asked for.
    if hasattr(config.option, "benchmark_disable") and not config.getoption("benchmark_enable"):
        config.option.benchmark_disable = True


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every slow (real-model) test is an integration test too."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("integration"):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def _isolated(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
              tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Iterator[None]:
    """Every test runs in its own empty folder with no profile from the environment.

    Unit tests also get a private model cache, so nothing they register or assemble reaches the
    user's ``~/.cache/appkit``; the catalogue is restored after each test.
    """
    from appkit.models import catalogue

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("APPKIT_PROFILE", raising=False)
    monkeypatch.setenv("ANONYMIZED_TELEMETRY", "False")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if not request.node.get_closest_marker("slow"):
        monkeypatch.setenv("APPKIT_CACHE", str(tmp_path_factory.getbasetemp() / "appkit-cache"))
    registry = dict(catalogue._registry)
    yield
    catalogue._registry.clear()
    catalogue._registry.update(registry)


@pytest.fixture
def profile(tmp_path: Path) -> Profile:
    """A default profile whose store lives in ``tmp_path/data``, with small chunks and no
    relevance floor (hashing embeddings score lower than real ones)."""
    return Profile(
        store=StoreConfig(path=str(tmp_path / "data")),
        retrieval=RetrievalConfig(chunk_size=200, chunk_overlap=20, min_relevance=0.0),
    )


@pytest.fixture
def embeddings() -> HashingEmbeddings:
    return HashingEmbeddings()


@pytest.fixture
def fake_llm() -> FakeChatModel:
    return FakeChatModel()


@pytest.fixture
def write_profile(tmp_path: Path) -> Callable[..., Path]:
    """Write a profile TOML (``data`` as a dict) and return its path."""
    import tomli_w

    def write(data: dict, name: str = "appkit.toml") -> Path:
        path = tmp_path / name
        path.write_text(tomli_w.dumps(data), encoding="utf-8")
        return path

    return write


@pytest.fixture
def docs_dir(tmp_path: Path) -> Path:
    """Three small text documents, several chunks each at ``chunk_size=200``."""
    folder = tmp_path / "docs"
    (folder / "notes").mkdir(parents=True)
    (folder / "alpha.txt").write_text(
        "Alpha project status.\n\n" + "The alpha sensor reads humidity every minute. " * 8,
        encoding="utf-8",
    )
    (folder / "notes" / "beta.md").write_text(
        "# Beta\n\n## Budget\n\nThe beta budget is forty thousand euros for the third quarter.\n\n"
        "## Staff\n\n" + "Two engineers and one designer work on beta full time. " * 5,
        encoding="utf-8",
    )
    (folder / "gamma.txt").write_text(
        "Gamma is the code name of the new data logger. " * 6, encoding="utf-8"
    )
    return folder


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A private copy of ``examples/docs`` that a test may change."""
    return Path(shutil.copytree(EXAMPLE_DOCS, tmp_path / "corpus"))


@pytest.fixture(scope="session")
def real_embeddings():
    """The packaged MiniLM embedder, loaded once per session."""
    from appkit.models import make_embeddings

    emb = make_embeddings(Profile())
    emb.warm_up()
    return emb


@pytest.fixture(scope="session")
def smollm_path() -> str:
    """The packaged SmolLM2-135M GGUF file (used in place from its package)."""
    from appkit.models.catalogue import resolve_model

    return str(resolve_model("smollm2-135m")[1])


@pytest.fixture(scope="session")
def chroma(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A real ``chroma run`` on 127.0.0.1 for the session; yields (host, port). Tests using it
    allow the host: ``pytest.mark.allow_hosts(["127.0.0.1"])``."""
    command = shutil.which("chroma", path=str(Path(sys.executable).parent)) or shutil.which("chroma")
    if command is None:
        pytest.skip("the chroma command is not installed (pip install 'appkit[store]')")
    port = free_port()
    folder = tmp_path_factory.mktemp("chroma-server")
    log = open(folder / "chroma.log", "wb")
    proc = subprocess.Popen([command, "run", "--path", str(folder / "db"), "--host", "127.0.0.1",
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", timeout=60, proc=proc)
        yield "127.0.0.1", port
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()
