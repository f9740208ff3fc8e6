"""The rubric metric of ``write`` and ``code``: an LLM judge grades a text against a 1-5 rubric.

It is ragas' ``DiscreteMetric`` (an LLM metric with a fixed set of answers and a reason) with the
rubric in its prompt, run by the same local judge as the RAG metrics (:class:`eval.judge.Judge`:
llama-cpp-python's server behind instructor, JSON forced by a grammar, calls cached on disk). The
grade is reported on 0..1 (``(grade - 1) / 4``) with the judge's reason; a case the judge cannot
grade (a timeout, unusable output, no judge) is NaN with the reason recorded, never silently.

Example:
    >>> from eval.metrics.rubric import RubricMetric, rubric_for
    >>> m = RubricMetric(judge=None, task="code")
    >>> m.name, m.needs, m.uses_judge
    ('rubric', ('question', 'answer'), True)
    >>> "tests" in rubric_for("code")
    True
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from eval.metrics.base import Sample, Score
from eval.metrics.ragas import RagasJudgeMetric, _ragas

if TYPE_CHECKING:
    from eval.judge import Judge

GRADES = ("1", "2", "3", "4", "5")
RUBRICS: dict[str, str] = {
    "write": (
        "5: follows every instruction of the brief (content, length, tone, form); clear, correct "
        "and concise; nothing invented beyond what the brief allows.\n"
        "4: follows the brief with one small lapse (a little long, slightly off in tone).\n"
        "3: does the task but misses one instruction or has a clear error.\n"
        "2: only partly does what the brief asks; several instructions missed or wrong facts.\n"
        "1: does not do what the brief asks, or is empty, off topic or unreadable."),
    "code": (
        "5: a complete, correct Python solution to the description, simple and readable; it "
        "would pass the given tests.\n"
        "4: correct for normal inputs with a minor weakness (an unhandled edge case, clumsy "
        "style).\n"
        "3: the right approach with a bug that breaks some cases or tests.\n"
        "2: mostly wrong or incomplete code, or it does something other than described.\n"
        "1: no code, code that cannot run, or code unrelated to the description."),
}



class RubricGrade(BaseModel):
    """The judge's answer: a reason, then a grade (the grammar allows nothing else).

    ragas' ``DiscreteMetric`` builds an equivalent model on the fly, which the judge's disk cache
    cannot pickle; this one lives in a module, so cached grades can be stored and read back.
    """

    reason: str = Field(..., description="Reasoning for the value")
    value: Literal["1", "2", "3", "4", "5"] = Field(..., description="The grade")


PROMPT = (
    "You grade a response to a task with this rubric (5 is best):\n{rubric}\n\n"
    "Task:\n{brief}\n\nReference answer (a good response, if any):\n{reference}\n\n"
    "Response to grade:\n{response}\n\n"
    "Give a one-sentence reason, then the grade as one of 1, 2, 3, 4, 5."
)


def rubric_for(task: str) -> str:
    """The rubric of ``task`` (``write``'s for any task without its own)."""
    return RUBRICS.get(task, RUBRICS["write"])


class RubricMetric(RagasJudgeMetric):
    """An LLM-judge rubric grade (0..1) of an answer to a brief.

    The sample's ``question`` is the brief (or the coding task), ``answer`` the response and
    ``reference`` an optional good response shown to the judge.

    Example:
        >>> from eval.metrics.rubric import RubricMetric
        >>> from eval.metrics.base import Sample
        >>> RubricMetric(judge=None).not_applicable(Sample("Write a haiku.", ""))
        'no answer'

    Args:
        judge: the :class:`~eval.judge.Judge` (started on the first uncached call).
        task: whose rubric to use (``write``, ``code``).
        rubric: a rubric text of your own instead.
    """

    name = "rubric"
    needs = ("question", "answer")
    uses_judge = True

    def __init__(self, judge: Judge | None, *, task: str = "write", rubric: str | None = None):
        self.judge = judge
        self.task = task
        self.rubric = rubric or rubric_for(task)
        self.embeddings = None
        self.strictness = 1
        self._llm: Any = None

    def _build(self) -> Any:
        if self.judge is None:
            raise ValueError("rubric needs a judge model")
        self._llm = self.judge.ragas_llm()
        metrics = _ragas("ragas.metrics")
        metric = metrics.DiscreteMetric(name=f"{self.task}_rubric", prompt=PROMPT,
                                        allowed_values=list(GRADES))
        metric._response_model = RubricGrade  # picklable for the judge's cache (see RubricGrade)
        return metric

    async def _ascore(self, metric: Any, sample: Sample) -> Score:
        result = await metric.ascore(llm=self._llm, rubric=self.rubric, brief=sample.question,
                                     reference=sample.reference or "(none)",
                                     response=sample.answer)
        grade = str(result.value).strip()
        if grade not in GRADES:
            return Score.failed(f"the judge gave {grade!r}, not a grade of 1-5")
        return Score((int(grade) - 1) / 4, f"grade {grade}/5: {result.reason or ''}".strip())
