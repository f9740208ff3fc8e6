"""The quality gate: the profile's ``[quality_gate]`` thresholds checked against a run.

::

    [quality_gate]
    faithfulness = ">= 0.7"
    token_f1 = ">= 0.5"
    hit_rate@5 = ">= 0.8"

Each condition compares the metric's mean over the cases it scored. A gated metric the run did not
compute, or could score on no case, fails the gate (a gate that silently passes on missing data is
no gate). ``min_scored`` (a share of the run's cases, default 0.5) fails a metric whose judge or
library failed on too many cases.

Example:
    >>> from eval.gate import check_gate
    >>> summary = {"testset": {"cases": 2}, "metrics": {"token_f1": {"mean": 0.8, "scored": 2}}}
    >>> check_gate({"token_f1": ">= 0.7"}, summary).passed
    True
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

from appkit.config import parse_condition
from appkit.errors import ConfigError

_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
        "==": operator.eq}


@dataclass
class GateCheck:
    metric: str
    condition: str
    value: float | None
    passed: bool
    note: str = ""


@dataclass
class GateResult:
    """Every condition's outcome; ``passed`` when all passed."""

    checks: list[GateCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "checks": [c.__dict__ for c in self.checks]}

    def render(self) -> str:
        if not self.checks:
            return "quality gate: no conditions in the profile's [quality_gate]"
        lines = []
        for c in self.checks:
            value = "missing" if c.value is None else f"{c.value:.3f}"
            lines.append(f"  {'PASS' if c.passed else 'FAIL'}  {c.metric} = {value} "
                         f"(needs {c.condition}){'  ' + c.note if c.note else ''}")
        head = "quality gate passed" if self.passed else "quality gate FAILED"
        return "\n".join([head, *lines])


def check_gate(gate: dict[str, str], summary: dict[str, Any], *,
               min_scored: float = 0.5) -> GateResult:
    """Check ``gate`` (metric -> condition) against a run's summary.

    Raises:
        ConfigError: a condition is malformed.
    """
    result = GateResult()
    cases = int(summary.get("testset", {}).get("cases") or 0)
    for metric, cond in gate.items():
        parsed = parse_condition(cond)
        if parsed is None:
            raise ConfigError(f"expected a condition such as '>= 0.7', got {cond!r}",
                              key=f"quality_gate.{metric}")
        op, threshold = parsed
        m = summary.get("metrics", {}).get(metric)
        if m is None:
            result.checks.append(GateCheck(metric, cond, None, False,
                                           "the run did not compute this metric"))
            continue
        if m.get("mean") is None:
            result.checks.append(GateCheck(metric, cond, None, False,
                                           f"no case could be scored ({m.get('failed', 0)} failed, "
                                           f"{m.get('not_applicable', 0)} not applicable)"))
            continue
        ok = _OPS[op](m["mean"], threshold)
        note = f"scored on {m['scored']}/{cases} cases" if cases else ""
        applicable = cases - int(m.get("not_applicable") or 0)
        if applicable and m["scored"] / applicable < min_scored:
            ok = False
            note = (f"only {m['scored']} of {applicable} applicable cases scored "
                    f"({m.get('failed', 0)} failed)")
        result.checks.append(GateCheck(metric, cond, m["mean"], ok, note))
    return result
