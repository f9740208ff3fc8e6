"""Load and latency of ``appkit serve`` on loopback, with a fake and with the real chat model.

Three steps, each in its own process, one after the other (embedded Chroma is never opened by two
processes at once):

1. ``prepare``: ingest ``examples/docs`` into a fresh data directory with the real embedder.
2. ``inproc``: time to first token of ``App.stream`` (what ``appkit ask`` runs), warm, in one
   process, ``--ttft-rounds`` times in the main thread (as ``appkit ask``) and as many in a worker
   thread (as the server runs it: torch's intra-op threads behave differently there).
3. ``serve``: the server (uvicorn, one worker) in a child process; this process sends
   ``--requests`` streamed ``appkit-rag`` chat requests, ``--concurrency`` at a time, over
   loopback, recording each request's time to first token, latency and status, and samples the
   server's resident memory every 0.5 s. Then the same warm time-to-first-token rounds as step 2
   (the same distinct questions in the same order), one request at a time.

Everything is bounded: ``--deadline-s`` stops the load test early (the report says so). Results are
printed as JSON and written to ``--out``.

Usage:
    .venv/bin/python benchmarks/bench_server.py --model fake --requests 200 --concurrency 8
    .venv/bin/python benchmarks/bench_server.py --model real --requests 24 --concurrency 8 \
        --max-tokens 32
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = [
    "What was decided about the Q3 budget?",
    "How do I reset my password?",
    "Which offices are in Europe?",
    "What is the travel policy for flights?",
    "What is on the product roadmap?",
    "What should a new employee do in the first week?",
]


def profile_for(data: Path, model: str, max_tokens: int) -> Path:
    from appkit.config import (ChatConfig, DocumentsConfig, GenerationConfig, Profile,
                               ServerConfig, StoreConfig, save_profile)

    profile = Profile(
        documents=DocumentsConfig(paths=(str(REPO / "examples" / "docs"),)),
        chat=ChatConfig(generation=GenerationConfig(max_tokens=max_tokens, temperature=0.0)),
        store=StoreConfig(path=str(data / "store")),
        server=ServerConfig(rate_limit_per_minute=0),
    )
    return save_profile(profile, data / "appkit.toml")


def build_app(profile_path: str, model: str):
    from appkit.app import App
    from appkit.config import load_profile

    profile = load_profile(profile_path)
    chat = None
    if model == "fake":
        from appkit.testing import FakeChatModel

        chat = FakeChatModel(default="The documents say the budget was capped at 40,000 euros "
                                     "for Q3, with 10,000 moved to hiring [1].")
    return profile, App(profile, chat_model=chat), chat


# --- child processes ---------------------------------------------------------------------------


def cmd_prepare(args: argparse.Namespace) -> None:
    _, app, _ = build_app(args.profile, "fake")
    report = app.ingest()
    print(json.dumps({"chunks": report.chunks_embedded, "files": report.added}))


def cmd_inproc(args: argparse.Namespace) -> None:
    from appkit.types import Answer

    _, app, _ = build_app(args.profile, args.model)

    def ttft(question: str = QUESTIONS[0]) -> float:
        start = time.perf_counter()
        first = None
        for item in app.stream(question):
            if not isinstance(item, Answer) and item and first is None:
                first = time.perf_counter() - start
        return first

    def in_thread(question: str) -> float:
        out: list[float] = []
        worker = threading.Thread(target=lambda: out.append(ttft(question)))
        worker.start()
        worker.join()
        return out[0]

    ttft()  # warm the models up
    main_thread = [ttft(q) for q in ttft_questions(args.ttft_rounds)]
    worker_thread = [in_thread(q) for q in ttft_questions(args.ttft_rounds)]
    print(json.dumps({"ttft_s": main_thread, "ttft_worker_thread_s": worker_thread}))


def ttft_questions(rounds: int) -> list[str]:
    """Distinct questions, so llama.cpp cannot reuse the previous prompt: the first token waits for
    retrieval and the whole prompt's evaluation, as it does for a new question."""
    return [QUESTIONS[1 + i % (len(QUESTIONS) - 1)] for i in range(rounds)]


def cmd_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from appkit.server.app import create_app, warm_up

    profile, app, chat = build_app(args.profile, args.model)
    server_app = create_app(profile, embeddings=app.embeddings, chat_model=chat)
    warm_up(server_app)
    uvicorn.run(server_app, host="127.0.0.1", port=args.port, log_level="warning")


# --- the driver --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def child(mode: str, args: argparse.Namespace, profile: Path, *extra: str) -> list[str]:
    return [sys.executable, __file__, mode, "--profile", str(profile), "--model", args.model,
            "--ttft-rounds", str(args.ttft_rounds), *extra]


def stream_request(client, question: str, max_tokens: int) -> dict:
    start = time.perf_counter()
    first, text, status = None, [], 0
    try:
        with client.stream("POST", "/v1/chat/completions", json={
                "model": "appkit-rag", "stream": True, "max_tokens": max_tokens,
                "messages": [{"role": "user", "content": question}]}) as r:
            status = r.status_code
            for line in r.iter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                data = json.loads(line[6:])
                if "error" in data:
                    status = 599
                    continue
                piece = data["choices"][0]["delta"].get("content") if data["choices"] else None
                if piece:
                    first = first or time.perf_counter() - start
                    text.append(piece)
    except Exception as exc:  # noqa: BLE001 - counted as an error
        return {"status": 0, "error": f"{type(exc).__name__}: {exc}",
                "latency_s": time.perf_counter() - start, "ttft_s": None}
    ok = status == 200 and bool("".join(text).strip())
    return {"status": status if ok else (status or 598), "latency_s": time.perf_counter() - start,
            "ttft_s": first}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def run(args: argparse.Namespace) -> dict:
    import httpx
    import psutil

    env = {**os.environ, "ANONYMIZED_TELEMETRY": "False", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    work = Path(tempfile.mkdtemp(prefix="bench-server-"))
    profile = profile_for(work, args.model, args.max_tokens)
    prep = json.loads(subprocess.run(child("prepare", args, profile), env=env, check=True,
                                     capture_output=True, text=True).stdout.splitlines()[-1])
    inproc = json.loads(subprocess.run(child("inproc", args, profile), env=env, check=True,
                                       capture_output=True, text=True).stdout.splitlines()[-1])

    port = free_port()
    log = open(work / "server.log", "wb")
    server = subprocess.Popen(child("serve", args, profile, "--port", str(port)), env=env,
                              stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                httpx.get(f"{base}/health", timeout=2)
                break
            except httpx.HTTPError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"server did not start; see {work / 'server.log'}")
                time.sleep(0.3)
        proc = psutil.Process(server.pid)
        rss_start = proc.memory_info().rss
        samples: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                samples.append(proc.memory_info().rss)
                stop.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        results: list[dict] = []
        t0 = time.perf_counter()
        load_deadline = time.monotonic() + args.deadline_s
        with httpx.Client(base_url=base, timeout=httpx.Timeout(args.deadline_s),
                          limits=httpx.Limits(max_connections=args.concurrency)) as client:
            def one(i: int) -> dict | None:
                if time.monotonic() > load_deadline:
                    return None
                return stream_request(client, QUESTIONS[i % len(QUESTIONS)], args.max_tokens)

            with ThreadPoolExecutor(max_workers=args.concurrency) as pool:
                results = [r for r in pool.map(one, range(args.requests)) if r is not None]
        wall = time.perf_counter() - t0
        rss_end = proc.memory_info().rss
        stop.set()
        sampler.join()

        server_ttft = []
        with httpx.Client(base_url=base, timeout=600) as client:
            stream_request(client, QUESTIONS[0], args.max_tokens)
            for question in ttft_questions(args.ttft_rounds):
                server_ttft.append(stream_request(client, question, args.max_tokens)["ttft_s"])
    finally:
        server.terminate()
        server.wait(timeout=60)
        log.close()

    ok = [r for r in results if r["status"] == 200]
    lat = [r["latency_s"] for r in ok]
    ttft = [r["ttft_s"] for r in ok if r["ttft_s"] is not None]
    inproc_med = statistics.median(inproc["ttft_s"])
    thread_med = statistics.median(inproc["ttft_worker_thread_s"])
    server_med = statistics.median(server_ttft)
    return {
        "model": args.model, "max_tokens": args.max_tokens, "concurrency": args.concurrency,
        "requested": args.requests, "completed": len(results),
        "stopped_early": len(results) < args.requests, "errors": len(results) - len(ok),
        "error_statuses": sorted({r["status"] for r in results if r["status"] != 200}),
        "chunks_in_store": prep["chunks"], "wall_s": round(wall, 2),
        "throughput_rps": round(len(ok) / wall, 3),
        "latency_p50_s": round(pct(lat, 50), 3) if lat else None,
        "latency_p95_s": round(pct(lat, 95), 3) if lat else None,
        "ttft_under_load_p50_s": round(pct(ttft, 50), 3) if ttft else None,
        "server_rss_mb": {"after_warm_up": round(rss_start / 2**20, 1),
                          "at_quarters_of_the_load": [
                              round(samples[min(len(samples) - 1, len(samples) * q // 4)] / 2**20, 1)
                              for q in (1, 2, 3, 4)] if samples else None,
                          "after_load": round(rss_end / 2**20, 1),
                          "max": round(max(samples) / 2**20, 1) if samples else None},
        "ttft_sequential": {
            "inproc_app_stream_s": [round(x, 4) for x in inproc["ttft_s"]],
            "inproc_worker_thread_s": [round(x, 4) for x in inproc["ttft_worker_thread_s"]],
            "server_s": [round(x, 4) for x in server_ttft],
            "inproc_median_s": round(inproc_med, 4),
            "inproc_worker_thread_median_s": round(thread_med, 4),
            "server_median_s": round(server_med, 4),
            "ratio_server_over_inproc": round(server_med / inproc_med, 3),
            "ratio_server_over_inproc_worker_thread": round(server_med / thread_med, 3)},
        "cpu_count": os.cpu_count(), "load_average_1m_at_end": round(os.getloadavg()[0], 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", nargs="?", default="run", choices=["run", "prepare", "inproc",
                                                                   "serve"])
    parser.add_argument("--model", choices=["fake", "real"], default="fake")
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--ttft-rounds", type=int, default=5)
    parser.add_argument("--deadline-s", type=float, default=900)
    parser.add_argument("--profile")
    parser.add_argument("--port", type=int)
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.mode != "run":
        {"prepare": cmd_prepare, "inproc": cmd_inproc, "serve": cmd_serve}[args.mode](args)
        return 0
    report = run(args)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    return 0 if report["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
