"""The LLM judge behind the ragas metrics: a catalogue model served on 127.0.0.1, or an endpoint.

ragas' metrics call an ``InstructorLLM``. Here that is
``instructor.from_openai(AsyncOpenAI(base_url=...), mode=instructor.Mode.JSON_SCHEMA)``, pointed at
llama-cpp-python's OpenAI-compatible server, which turns the JSON schema of each ragas prompt into a
grammar: the judge can only answer with valid JSON of the right shape. The server runs in its own
process on a free loopback port, started when the judge is first used and stopped by
:meth:`Judge.close` (or the ``with`` block); it answers one request at a time, which is also what
keeps llama.cpp safe (one model called from several threads crashes unless serialized).

Judge calls are cached on disk per judge (ragas' ``DiskCacheBackend``), so re-scoring unchanged
answers costs nothing.

Example:
    >>> from eval.judge import Judge
    >>> judge = Judge("smollm2-135m")  # nothing starts yet
    >>> judge.name
    'smollm2-135m'
    >>> with Judge("qwen2.5-coder-0.5b") as j:  # doctest: +SKIP
    ...     llm = j.ragas_llm()
"""

from __future__ import annotations

import atexit
import hashlib
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from appkit.errors import AppkitError
from appkit.lazy import require

# Catalogue chat models a judge may default to, best first (judge quality grows with size).
JUDGE_PREFERENCE = ("qwen2.5-coder-1.5b", "qwen2.5-coder-0.5b", "smollm2-135m")
SMALL_JUDGE_CAVEAT = (
    "judge scores from a model this small are rough: read them next to the judge's agreement with "
    "hand labels (TPR/TNR), and prefer a larger judge or endpoint for decisions"
)


class JudgeError(AppkitError):
    """The judge could not be started or reached."""


def _os_environ_ragas() -> None:
    os.environ.setdefault("RAGAS_DO_NOT_TRACK", "true")


def available_memory_bytes() -> int:
    """Memory the judge may use: MemAvailable from /proc/meminfo, else total physical memory."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def default_judge_name(memory: int | None = None) -> str:
    """The best installed catalogue chat model that fits in memory (model size x 2 + 1 GB).

    Raises:
        JudgeError: when no judge model is installed.
    """
    from appkit.models.catalogue import get_spec

    memory = available_memory_bytes() if memory is None else memory
    for name in JUDGE_PREFERENCE:
        spec = get_spec(name)
        if not spec.installed:
            continue
        if spec.size and spec.size * 2 + (1 << 30) > memory:
            continue
        return name
    raise JudgeError("no judge model is installed; install one with: "
                     + get_spec("qwen2.5-coder-0.5b").install)


# Runs llama-cpp-python's server, exiting when the process that started it is gone (even when it
# was killed by a signal that skipped its clean-up), so no judge server is ever left behind.
_SERVER_MAIN = """
import os, runpy, sys, threading, time
parent = os.getppid()
def watch():
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
sys.argv = ["llama_cpp.server", *sys.argv[1:]]
runpy.run_module("llama_cpp.server", run_name="__main__")
"""


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """llama-cpp-python's OpenAI-compatible server for one GGUF, on 127.0.0.1, as a child process.

    Example:
        >>> from eval.judge import LlamaServer
        >>> server = LlamaServer("model.gguf", alias="judge")  # nothing runs until start()
        >>> server.running
        False

    Args:
        model_path: the GGUF file.
        alias: the model name clients ask for.
        n_ctx: context length (ragas prompts with four chunks need about 3,000 tokens).
        n_threads: 0 for appkit's default.
        start_timeout: seconds to wait for the server to answer.
    """

    def __init__(self, model_path: str, *, alias: str = "judge", n_ctx: int = 8192,
                 n_threads: int = 0, start_timeout: float = 180.0):
        self.model_path = model_path
        self.alias = alias
        self.n_ctx = n_ctx
        self.n_threads = n_threads
        self.start_timeout = start_timeout
        self.port = free_port()  # chosen now, so clients can be pointed at it before start()
        self.starts = 0
        self._proc: subprocess.Popen | None = None
        self._log: Any = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> str:
        """Start the server and wait until it answers; returns its base URL.

        Raises:
            JudgeError: when the server extras are missing, or it exits or stays silent.
        """
        if self.running:
            return self.base_url
        for module in ("fastapi", "uvicorn", "sse_starlette", "starlette_context",
                       "pydantic_settings"):
            require(module, extra="eval", package=module.replace("_", "-"))
        from appkit.models.llama_cpp import default_threads

        httpx = require("httpx", extra="eval")
        if self.starts:
            self.port = free_port()
        self.starts += 1
        self._log = tempfile.TemporaryFile(mode="w+")
        cmd = [
            sys.executable, "-c", _SERVER_MAIN, "--model", self.model_path,
            "--model_alias", self.alias, "--host", "127.0.0.1", "--port", str(self.port),
            "--n_ctx", str(self.n_ctx), "--n_threads", str(self.n_threads or default_threads()),
            # logits for every position would cost n_ctx x vocabulary floats (GBs for Qwen)
            "--logits_all", "false", "--verbose", "false",
        ]
        self._proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL)
        atexit.register(self.stop)
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise JudgeError(f"the judge server for {self.model_path} exited "
                                 f"(code {self._proc.returncode}): {self._tail()}")
            try:
                if httpx.get(self.base_url + "/models", timeout=2.0).status_code == 200:
                    return self.base_url
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise JudgeError(f"the judge server did not answer within {self.start_timeout:.0f}s")

    def _tail(self, chars: int = 800) -> str:
        if self._log is None:
            return ""
        self._log.seek(0)
        return " ".join(self._log.read()[-chars:].split())

    def stop(self) -> None:
        """Stop the server (terminate, then kill after 10 s)."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> LlamaServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Judge:
    """An LLM judge for ragas: a catalogue model or GGUF served locally, or an endpoint URL.

    Example:
        >>> from eval.judge import Judge
        >>> Judge("http://127.0.0.1:8080/v1#qwen").is_endpoint
        True

    Args:
        name: a catalogue name (``qwen2.5-coder-0.5b``), a ``.gguf`` path, or an OpenAI-compatible
            endpoint ``http://host:port/v1#model``. None picks :func:`default_judge_name`.
        cache_dir: where judge calls are cached (one sub-folder per judge); None disables caching.
        timeout: seconds one judge call may take before the case is recorded as failed.
        max_tokens: the most tokens one judge answer may have.
        n_ctx: the served model's context length.
    """

    def __init__(self, name: str | None = None, *, cache_dir: str | os.PathLike | None = None,
                 timeout: float = 180.0, max_tokens: int = 768, n_ctx: int = 8192):
        self.name = name or default_judge_name()
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.timeout = timeout
        self.max_tokens = max_tokens
        self.n_ctx = n_ctx
        self._server: LlamaServer | None = None

    @property
    def is_endpoint(self) -> bool:
        return self.name.startswith(("http://", "https://"))

    @property
    def caveat(self) -> str:
        """A warning to print next to the scores of small local judges ("" for others)."""
        if self.is_endpoint or self.name == JUDGE_PREFERENCE[0]:
            return ""
        return SMALL_JUDGE_CAVEAT

    def base_url_and_model(self, *, start: bool = True) -> tuple[str, str]:
        """The endpoint and the model name to ask for; the local server is started unless
        ``start`` is false (then it starts on the first request, see :meth:`ragas_llm`)."""
        if self.is_endpoint:
            from appkit.models.openai_compat import split_endpoint

            return split_endpoint(self.name)
        if self._server is None:
            from appkit.models.catalogue import resolve_model

            spec, path = resolve_model(self.name)
            if spec.format != "gguf":
                raise JudgeError(f"judge '{self.name}' is not a GGUF chat model")
            self._server = LlamaServer(str(path), alias="judge", n_ctx=self.n_ctx)
        if start:
            self._server.start()
        return self._server.base_url, "judge"

    async def _ensure_server(self, request: Any) -> None:
        """httpx request hook: start the local server on the first request that reaches it, so
        a run whose judge calls all come from the cache loads no judge model."""
        import asyncio

        server = self._server
        if server is not None and not server.running:
            await asyncio.to_thread(server.start)

    def cache_path(self) -> Path | None:
        if self.cache_dir is None:
            return None
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", self.name)[-60:]
        digest = hashlib.sha1(self.name.encode()).hexdigest()[:8]
        return self.cache_dir / f"{slug}-{digest}"

    def ragas_llm(self) -> Any:
        """A fresh ragas ``InstructorLLM`` on an async OpenAI client (one per event loop)."""
        _os_environ_ragas()
        openai = require("openai", extra="eval")
        instructor = require("instructor", extra="eval")
        llms = require("ragas.llms.base", extra="eval", package="ragas")
        httpx = require("httpx", extra="eval")
        base_url, model = self.base_url_and_model(start=False)
        key = os.environ.get("APPKIT_OPENAI_API_KEY") or os.environ.get("OPENAI_API_KEY") or "none"
        http_client = httpx.AsyncClient(timeout=self.timeout,
                                        event_hooks={"request": [self._ensure_server]})
        client = openai.AsyncOpenAI(base_url=base_url, api_key=key, timeout=self.timeout,
                                    max_retries=0, http_client=http_client)
        cache = None
        if self.cache_path() is not None:
            cache_mod = require("ragas.cache", extra="eval", package="ragas")
            cache = cache_mod.DiskCacheBackend(str(self.cache_path()))
        return llms.InstructorLLM(
            client=instructor.from_openai(client, mode=instructor.Mode.JSON_SCHEMA),
            model=model, provider="openai", cache=cache,
            model_args=llms.InstructorModelArgs(temperature=0.0, top_p=1.0,
                                                max_tokens=self.max_tokens),
        )

    def close(self) -> None:
        """Stop the local judge server, if one was started."""
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> Judge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a forgotten judge must not leave a server behind
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110 - interpreter shutdown
            pass


def ragas_embeddings(embeddings: Any) -> Any:
    """Wrap a LangChain ``Embeddings`` (the profile's embedder) as a ragas embedding model."""
    _os_environ_ragas()
    base = require("ragas.embeddings.base", extra="eval", package="ragas")

    class _LangChainEmbeddings(base.BaseRagasEmbedding):
        def __init__(self, inner: Any):
            super().__init__()
            self.inner = inner

        def embed_text(self, text: str, **kwargs: Any) -> list[float]:
            return list(self.inner.embed_query(text))

        async def aembed_text(self, text: str, **kwargs: Any) -> list[float]:
            return self.embed_text(text)

        def embed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
            return [list(v) for v in self.inner.embed_documents(list(texts))]

        async def aembed_texts(self, texts: list[str], **kwargs: Any) -> list[list[float]]:
            return self.embed_texts(texts)

    return _LangChainEmbeddings(embeddings)
