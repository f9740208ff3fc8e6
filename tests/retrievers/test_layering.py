"""The layer rules: ``retrievers`` imports only ``appkit`` (never eval, finetune, ui), the core never
imports ``retrievers``, and importing any retriever module loads no model library or bm25s."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ABOVE = {"eval", "finetune", "ui"}


def imported_roots(folder: Path) -> dict[str, set[str]]:
    found = {}
    for path in folder.rglob("*.py"):
        roots = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                roots |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                roots.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = roots
    return found


def test_retrievers_import_only_from_below():
    bad = {p: r & ABOVE for p, r in imported_roots(REPO / "retrievers").items() if r & ABOVE}
    assert not bad


def test_the_core_never_imports_retrievers():
    bad = [p for p, r in imported_roots(REPO / "appkit").items() if "retrievers" in r]
    assert not bad


def test_importing_retrievers_is_light():
    code = ("import json, sys, retrievers.registry, retrievers.bm25, retrievers.rerank, "
            "retrievers.train, retrievers.cli, retrievers.query_transform, retrievers.context\n"
            "heavy = {'torch', 'sentence_transformers', 'bm25s', 'Stemmer', 'chromadb', 'ranx',"
            " 'datasets', 'transformers'}\n"
            "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} & heavy)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
