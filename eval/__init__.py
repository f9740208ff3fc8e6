"""appkit layer: eval. Is the app good enough to ship, and did a change make it better or worse?

Test sets (:mod:`eval.testset`), metrics by name (:mod:`eval.metrics`), the runner that answers
with the app's own chain and writes a run directory (:mod:`eval.runner`), run comparison
(:mod:`eval.compare`), the quality gate (:mod:`eval.gate`), the LLM judge behind the ragas metrics
(:mod:`eval.judge`, :mod:`eval.judge_check`) and synthetic test sets (:mod:`eval.generate`).
The command line is ``appkit eval`` (:mod:`eval.cli`). See ``eval/README.md``.

Importing this package loads no model or metric library; each is imported when first used.

Example:
    >>> from eval import TestCase, make_metric, Sample
    >>> make_metric("token_f1").score(Sample("q", "in Paris", answers=("Paris",))).value
    0.6666666666666666
"""

from eval.metrics import Sample, Score, make_metric, make_metrics
from eval.testset import TestCase, load_testset, save_testset

__all__ = ["Sample", "Score", "TestCase", "load_testset", "make_metric", "make_metrics",
           "save_testset"]
