"""``import appkit`` and ``appkit --help`` stay light: no model or database library is imported."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO

HEAVY = ("torch", "llama_cpp", "chromadb", "transformers", "sentence_transformers",
         "langchain_huggingface", "langchain_chroma", "streamlit", "pypdf", "docx", "bs4")

PROBE = """
import json, sys
{setup}
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
print(json.dumps(heavy))
"""


def imported_heavy(setup: str) -> list[str]:
    code = PROBE.format(setup=setup, heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(
    "setup",
    [
        "import appkit",
        "import appkit.cli, appkit.config, appkit.app, appkit.models, appkit.retrieval",
        "import appkit.ingest.pipeline, appkit.store.chroma, appkit.chains.rag, appkit.testing",
        "import appkit.models.llama_cpp, appkit.models.sentence_transformers, appkit.doctor",
    ],
    ids=["appkit", "core", "pipeline", "adapters"],
)
def test_importing_loads_no_heavy_library(setup: str) -> None:
    assert imported_heavy(setup) == []


def test_help_loads_no_heavy_library() -> None:
    setup = (
        "import contextlib, io\n"
        "from appkit.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
    )
    assert imported_heavy(setup) == []


def test_the_console_script_runs() -> None:
    done = subprocess.run([sys.executable, "-m", "appkit.cli", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("usage: appkit")
