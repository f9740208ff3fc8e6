"""Importing the eval layer loads no model or metric library (they load when first used)."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import REPO

HEAVY = ("torch", "llama_cpp", "chromadb", "ragas", "ranx", "rouge_score", "sacrebleu", "scipy",
         "matplotlib", "instructor", "openai", "sentence_transformers", "transformers")


def test_importing_eval_loads_no_heavy_library() -> None:
    code = (
        "import json, sys\n"
        "import eval, eval.cli, eval.runner, eval.judge, eval.judge_check, eval.compare, "
        "eval.gate, eval.generate, eval.report, eval.metrics, eval.sizes, eval.tasks_cli\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
