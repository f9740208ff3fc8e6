"""Peak memory of ``appkit ask`` with the default models, as a user runs it (a fresh process).

Ingests a small folder first (not measured), then runs ``appkit ask`` in a child process and reads its
peak resident set size from ``getrusage(RUSAGE_CHILDREN)``. The baseline in the same run is a child
that only imports appkit, so the report shows what the models and the store add.

Usage:
    .venv/bin/python benchmarks/bench_memory.py [--folder examples/docs] [--question "..."]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child_peak_mb(cmd: list[str], env: dict[str, str], cwd: str) -> float:
    """Run ``cmd`` and return its peak RSS in MB (each call in its own grandchild)."""
    probe = (
        "import resource, subprocess, sys;"
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", probe, *cmd], env=env, cwd=cwd, check=True,
                         capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1]) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folder", default=str(ROOT / "examples" / "docs"))
    parser.add_argument("--question", default="What did we decide about the Q3 budget?")
    args = parser.parse_args()
    appkit = str(Path(sys.executable).with_name("appkit"))
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, APPKIT_PROFILE=str(Path(tmp) / "appkit.toml"))
        subprocess.run([appkit, "ingest", args.folder], env=env, cwd=tmp, check=True,
                       stdout=subprocess.DEVNULL)
        base = child_peak_mb([sys.executable, "-c", "import appkit"], env, tmp)
        ask = child_peak_mb([appkit, "ask", args.question], env, tmp)
    print(f"peak RSS of a python that imports appkit: {base:.0f} MB")
    print(f"peak RSS of `appkit ask` (Qwen2.5-0.5B Q4_K_M + MiniLM + Chroma): {ask:.0f} MB "
          f"(target < 2048 MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
