"""The Streamlit app's own cost: time to a rendered page, and its latency over ``appkit ask``.

1. **Startup.** ``appkit ui`` is started fresh ``--starts`` times; headless Chromium (Debian's, driven
   by Playwright) waits until the Chat page's question box is on screen. The clock starts just
   before the process is spawned. For comparison, the same ``streamlit run`` command on a page
   holding only a question box is timed the same way (Streamlit's own floor on this machine).
2. **Latency.** The same question, with the same real models (the profile's chat model, greedy, and
   MiniLM embeddings) over the ingested ``examples/docs``, is asked ``--rounds`` times through:

   - the app: typed into the Chat page of a running ``appkit ui`` (a fresh browser session each time,
     so there is no history to condense); a MutationObserver in the page timestamps the Enter key,
     the first answer text on screen and the sources line under the finished answer;
   - ``appkit ask``'s work in a warm process: ``App.stream`` on the same profile, the exact call
     ``appkit ask`` makes once it has started and loaded the models (first text piece, then the
     finished ``Answer``).

   Rounds alternate the two so they share the machine's noise; both sides are warmed up first. For
   context, ``appkit ask`` as a cold command (Python start, imports, model load) is timed too.

   On a shared machine the two sides of a round still see different load, so the gate is the
   *paired* ratio: for each app round, the time the browser saw divided by the chain's own timing
   of that very request (``Answer.timings``, saved with the conversation: exactly the work
   ``appkit ask`` does), i.e. everything the app adds (websocket, script run, rendering) on top.
   Because the browser shares the CPU with the model, the CPU seconds each answer costs are also
   counted: the Streamlit server (model included) plus Chromium, against ``appkit ask``'s process,
   a measure that load on the machine barely moves.

Usage:
    .venv/bin/python benchmarks/bench_ui.py [--rounds 5] [--starts 3] [--max-tokens 96]
    .venv/bin/python benchmarks/bench_ui.py --rounds 0 --cold-asks 0   # startup only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("APPKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--disable-background-networking", "--disable-component-update", "--no-first-run",
        "--disable-sync"]
QUESTION = "What is the hotel limit per night in the travel policy?"
BOX = "Ask a question about your documents"

OBSERVER = """
() => {
  window.__t = {};
  document.addEventListener('keydown', e => {
    if (e.key === 'Enter' && !window.__t.start) window.__t.start = performance.now();
  }, true);
  const check = () => {
    const msgs = document.querySelectorAll('[data-testid="stChatMessage"]');
    if (!window.__t.start || msgs.length < 2) return;
    const last = msgs[msgs.length - 1];
    const text = [...last.querySelectorAll('[data-testid="stMarkdownContainer"]')]
      .filter(el => !el.closest('[data-testid="stSpinner"]'))
      .map(el => el.innerText).join('').replace('▌', '').trim();
    if (!window.__t.first && text.length > 0) window.__t.first = performance.now();
    if (!window.__t.full && last.innerText.includes('Sources')) window.__t.full = performance.now();
  };
  new MutationObserver(check).observe(document.body,
    {subtree: true, childList: true, characterData: true});
}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_ui(profile: Path, port: int, log: Path, bare: bool = False) -> subprocess.Popen:
    """``appkit ui`` on ``port``; with ``bare``, the same ``streamlit run`` command on a one-line
    page holding only the question box (Streamlit's own floor, for comparison)."""
    env = dict(os.environ, APPKIT_PROFILE=str(profile))
    env.pop("APPKIT_UI_APP_FACTORY", None)
    cmd = [str(REPO / ".venv/bin/appkit"), "ui", "--port", str(port)]
    if bare:
        from ui.cli import streamlit_command

        script = profile.parent / "bare.py"
        script.write_text(f"import streamlit as st\nst.chat_input({BOX!r})\n")
        cmd = streamlit_command(port=port)
        cmd[4] = str(script)
    return subprocess.Popen(cmd, cwd=profile.parent, env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def time_startup(browser, profile: Path, work: Path, bare: bool = False) -> float:
    """Seconds from spawning ``appkit ui`` to the Chat page's question box being visible."""
    port = free_port()
    page = browser.new_page()
    t0 = time.perf_counter()
    proc = start_ui(profile, port, work / f"start-{port}.log", bare)
    try:
        while True:
            try:
                page.goto(f"http://127.0.0.1:{port}/", timeout=2000)
                break
            except Exception:  # noqa: BLE001 - connection refused until the server listens
                if proc.poll() is not None or time.perf_counter() - t0 > 120:
                    raise RuntimeError("appkit ui did not start; see " + str(work))
                time.sleep(0.05)
        page.get_by_placeholder(BOX).wait_for(timeout=120_000)
        return time.perf_counter() - t0
    finally:
        page.close()
        stop(proc)


def chain_timings(conversations: Path, seen: set[str]) -> dict[str, float]:
    """The chain's own timings of the newest conversation's answer (what ``appkit ask`` does)."""
    from ui.conversations import ConversationStore

    store = ConversationStore(conversations)
    deadline = time.time() + 30
    while time.time() < deadline:
        fresh = [c for c in store.list() if c["id"] not in seen]
        if fresh:
            seen.add(fresh[0]["id"])
            t = store.load(fresh[0]["id"]).turns[-1].answer.timings
            return {"first_token": t["first_token"],
                    "full": t.get("condense", 0) + t["retrieve"] + t["generate"]}
        time.sleep(0.1)
    raise RuntimeError("the app saved no conversation")


def cpu_seconds(processes: list) -> float:
    """User + system CPU seconds of processes (ones that ended are skipped)."""
    import psutil

    total = 0.0
    for p in processes:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def browser_processes() -> list:
    import psutil

    return [p for p in psutil.Process().children(recursive=True) if "chrom" in p.name().lower()]


def server_processes(pid: int) -> list:
    import psutil

    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def ui_round(browser, url: str, conversations: Path, seen: set[str], server_pid: int
             ) -> dict[str, float]:
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(url)
        page.get_by_placeholder(BOX).wait_for(timeout=60_000)
        page.evaluate(OBSERVER)
        box = page.get_by_placeholder(BOX)
        box.fill(QUESTION)
        server, chrome = server_processes(server_pid), browser_processes()
        cpu0 = (cpu_seconds(server), cpu_seconds(chrome))
        box.press("Enter")
        page.wait_for_function("window.__t.full", timeout=300_000, polling=50)
        cpu1 = (cpu_seconds(server), cpu_seconds(chrome))
        t = page.evaluate("window.__t")
        inner = chain_timings(conversations, seen)
        return {"first_token": (t["first"] - t["start"]) / 1000,
                "full": (t["full"] - t["start"]) / 1000,
                "chain_first_token": inner["first_token"], "chain_full": inner["full"],
                "cpu_server": cpu1[0] - cpu0[0], "cpu_browser": cpu1[1] - cpu0[1]}
    finally:
        page.close()


def ask_round(app) -> dict[str, float]:
    import psutil

    from appkit.types import Answer

    me = psutil.Process()
    cpu0 = cpu_seconds([me])
    t0 = time.perf_counter()
    first = None
    for item in app.stream(QUESTION, []):
        if isinstance(item, Answer):
            break
        if first is None and item.strip():
            first = time.perf_counter() - t0
    return {"first_token": first or 0.0, "full": time.perf_counter() - t0,
            "cpu": cpu_seconds([me]) - cpu0}


def cold_ask(profile: Path) -> dict[str, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(REPO / ".venv/bin/appkit"), "ask", "--profile", str(profile),
                             QUESTION], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            cwd=profile.parent)
    proc.stdout.read(1)
    first = time.perf_counter() - t0
    proc.stdout.read()
    proc.wait()
    return {"first_token": first, "full": time.perf_counter() - t0}


def summary(rows: list[dict[str, float]], key: str) -> dict[str, float]:
    values = [r[key] for r in rows]
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}


def measure_latency(browser, app, profile: Path, work: Path, rounds: int
                    ) -> tuple[list[dict[str, float]], list[dict[str, float]]]:
    """Alternating app and ``appkit ask`` rounds on the same question, after a warm-up of each."""
    port = free_port()
    proc = start_ui(profile, port, work / "server.log")
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        conversations = work / "data" / "conversations"
        seen: set[str] = set()
        ui_round(browser, url, conversations, seen, proc.pid)  # warm-up: loads the server's models
        ask_round(app)  # warm-up: loads the models here
        ui_rows, ask_rows = [], []
        for i in range(rounds):
            pair = [("app", lambda: ui_round(browser, url, conversations, seen, proc.pid)),
                    ("ask", lambda: ask_round(app))]
            for name, run in (pair if i % 2 == 0 else pair[::-1]):
                row = run()
                (ui_rows if name == "app" else ask_rows).append(row)
                print(f"round {i + 1} {name}: {row}", file=sys.stderr)
        return ui_rows, ask_rows
    finally:
        stop(proc)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # run the finally blocks: the servers this script started stop too


def main() -> int:
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--cold-asks", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    parser.add_argument("--out", default=str(REPO / "benchmarks/out/ui.json"))
    args = parser.parse_args()
    if not os.path.exists(CHROMIUM):
        print("needs Chromium: apt-get install -y chromium", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

    import tomli_w
    from playwright.sync_api import sync_playwright

    from appkit.app import App
    from appkit.config import load_profile

    work = Path(tempfile.mkdtemp(prefix="bench-ui-"))
    profile = work / "appkit.toml"
    profile.write_text(tomli_w.dumps({
        "documents": {"paths": [str(REPO / "examples/docs")]},
        "chat": {"model": args.model,
                 "generation": {"max_tokens": args.max_tokens, "temperature": 0.0}},
        "store": {"path": str(work / "data")}}), encoding="utf-8")
    app = App(load_profile(profile))
    report = app.ingest() if args.rounds or args.cold_asks else None
    if report:
        print(f"ingested {report.added} files ({report.chunks_embedded} chunks) into {work}",
              file=sys.stderr)
    results: dict = {"question": QUESTION, "model": args.model, "max_tokens": args.max_tokens,
                     "cpus": os.cpu_count()}

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for key, bare in (("startup_s", False), ("startup_bare_streamlit_s", True)):
            starts = []
            for _ in range(args.starts):
                starts.append(time_startup(browser, profile, work, bare))
            results[key] = {"runs": [round(s, 3) for s in starts],
                            "median": round(statistics.median(starts), 3)}
            print(f"{key}: {results[key]}", file=sys.stderr)

        ui_rows, ask_rows = (measure_latency(browser, app, profile, work, args.rounds)
                             if args.rounds else ([], []))
        browser.close()
    cold = [cold_ask(profile) for _ in range(args.cold_asks)]
    ok = True
    if ui_rows:
        for key in ("first_token", "full"):
            app_s, ask_s = summary(ui_rows, key), summary(ask_rows, key)
            paired = [r[key] / r[f"chain_{key}"] for r in ui_rows]
            results[key] = {
                "app": app_s, "ask_warm": ask_s,
                "ask_cold_command": summary(cold, key) if cold else None,
                "ratio_app_over_ask": round(app_s["median"] / ask_s["median"], 3),
                "paired_ratio": {"median": round(statistics.median(paired), 3),
                                 "max": round(max(paired), 3),
                                 "added_s_median": round(statistics.median(
                                     r[key] - r[f"chain_{key}"] for r in ui_rows), 3)}}
            ok = ok and results[key]["paired_ratio"]["median"] <= 1.1
        app_cpu = statistics.median(r["cpu_server"] + r["cpu_browser"] for r in ui_rows)
        ask_cpu = statistics.median(r["cpu"] for r in ask_rows)
        results["cpu_s_per_answer"] = {
            "app_server": round(statistics.median(r["cpu_server"] for r in ui_rows), 3),
            "app_browser": round(statistics.median(r["cpu_browser"] for r in ui_rows), 3),
            "ask": round(ask_cpu, 3), "ratio_app_over_ask": round(app_cpu / ask_cpu, 3)}
    results["rounds"] = {"app": ui_rows, "ask_warm": ask_rows, "ask_cold_command": cold}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "rounds"}, indent=2))
    if ui_rows:
        print("ratio <= 1.1: " + ("yes" if ok else "NO"))
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
