"""Before/after evaluation of a run, with a forgetting check on a retain set of another task.

The same eval set is answered by the base model and by the tuned one, through the app's own chat
model class (llama.cpp, greedy) and the app's prompt, and scored with the SQuAD metrics of
``eval.metrics`` (exact match, token F1). The retain set (the profile's ``finetune.retain_set``,
another task) is scored the same way; when its score drops by more than the threshold
(``finetune.forgetting_threshold`` points) the report says so.

The tuned model is the run's GGUF LoRA adapter over the base's own GGUF (written once into the run
folder), or for a full fine-tune a merged F16 GGUF, so a check needs no export.

Example:
    >>> from finetune.check import is_refusal
    >>> is_refusal("The documents do not say.")
    True
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from appkit.config import PromptConfig
from appkit.errors import AppkitError
from eval.metrics.alignment import is_refusal  # one list of refusal phrasings with appkit eval
from finetune.data import Example, read_rows, render_messages
from finetune.runs import Run

REFUSAL = "The documents do not say."


def clean_answer(text: str) -> str:
    """The answer as scored: citation markers and surrounding blanks removed."""
    import re

    return re.sub(r"\s*\[\d+(?:,\s*\d+)*\]", "", text).strip()


def references(output: str) -> list[str]:
    """The acceptable answers a row's ``output`` holds (several are joined by ``" ||| "``).

    Example:
        >>> references("Paris ||| the city of Paris")
        ['Paris', 'the city of Paris']
    """
    return [r for r in output.split(" ||| ") if r.strip()]


@dataclass
class Scores:
    """Mean scores of one model on one set (0-100) and the answers given."""

    exact_match: float
    token_f1: float
    refusal_rate: float
    n: int
    seconds: float
    answers: list[str] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, float]:
        return {"exact_match": round(self.exact_match, 2), "token_f1": round(self.token_f1, 2),
                "refusal_rate": round(self.refusal_rate, 2), "n": self.n,
                "seconds": round(self.seconds, 1)}


def make_model(model_path: str, *, lora_path: str = "", max_tokens: int = 48, n_ctx: int = 2048,
               threads: int = 0) -> Any:
    """The app's chat model over a GGUF, greedy, for scoring."""
    from appkit.models.llama_cpp import LlamaCppChatModel

    return LlamaCppChatModel(model_path=model_path, lora_path=lora_path, n_ctx=n_ctx,
                             n_threads=threads, max_tokens=max_tokens, temperature=0.0, top_k=1,
                             repeat_penalty=1.0)


def score_rows(chat_model: Any, rows: Sequence[Example], *, prompt: PromptConfig | None = None,
               progress: bool = True, desc: str = "answering") -> Scores:
    """Answer every row with ``chat_model`` and score against ``row.output`` (SQuAD EM and F1).

    Rows may carry several acceptable answers joined by ``" ||| "`` in ``output``.
    """
    from eval.metrics.squad import exact_match, token_f1

    if not rows:
        raise AppkitError("nothing to score: the set is empty")
    start = time.perf_counter()
    answers: list[str] = []
    em = f1 = refusals = 0.0
    iterator: Any = rows
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(rows, desc=desc, unit="q", dynamic_ncols=True)
    for row in iterator:
        reply = chat_model.invoke(render_messages(row, prompt)).text
        answer = clean_answer(reply)
        refs = references(row.output)
        answers.append(answer)
        em += exact_match(answer, refs)
        f1 += token_f1(answer, refs)
        refusals += is_refusal(answer)
    n = len(rows)
    return Scores(100 * em / n, 100 * f1 / n, 100 * refusals / n, n,
                  time.perf_counter() - start, answers)


def rows_from_testset(path: str | Path) -> list[Example]:
    """Read an eval set (``eval.testset`` format) or instruction rows as scoring rows; every
    acceptable answer is kept (joined by ``" ||| "``)."""
    p = Path(path)
    try:
        from eval.testset import load_testset

        cases, _ = load_testset(p)
    except Exception:  # noqa: BLE001 - not a test set: read it as instruction rows
        return read_rows(p)[0]
    rows = []
    for c in cases:
        if not c.answers:
            continue
        rows.append(Example(c.question, " ||| ".join(c.answers),
                            input="\n\n".join(c.reference_contexts), task=c.task or "qa",
                            group=str(c.metadata.get("title", ""))))
    return rows


def tuned_model_files(run: Run, *, log: Callable[[str], None] = print) -> tuple[Path, Path | None]:
    """The GGUF (and LoRA adapter) that stand for the run's tuned model, written once."""
    from finetune.export import read_change, write_lora_gguf, write_merged_gguf

    info = run.info
    base_gguf = Path(info["base_gguf"])
    folder = run.path / "check"
    folder.mkdir(exist_ok=True)
    if info.get("method", "lora") == "lora":
        adapter = folder / "adapter.gguf"
        if not adapter.exists() or adapter.stat().st_mtime < run.final_dir.stat().st_mtime:
            tmp = folder / "adapter.gguf.partial"
            write_lora_gguf(base_gguf, read_change(run), tmp)
            tmp.replace(adapter)
        return base_gguf, adapter
    merged = folder / "merged-f16.gguf"
    if not merged.exists() or merged.stat().st_mtime < run.final_dir.stat().st_mtime:
        tmp = folder / "merged-f16.gguf.partial"
        write_merged_gguf(base_gguf, read_change(run), tmp, log=log)
        tmp.replace(merged)
    return merged, None


@dataclass
class CheckReport:
    """Before/after scores on the eval set and the retain set."""

    run: str
    eval_set: str
    before: dict[str, float]
    after: dict[str, float]
    retain_set: str = ""
    retain_before: dict[str, float] = field(default_factory=dict)
    retain_after: dict[str, float] = field(default_factory=dict)
    threshold: float = 2.0
    warnings: list[str] = field(default_factory=list)

    @property
    def delta(self) -> float:
        return self.after["token_f1"] - self.before["token_f1"]

    @property
    def retain_delta(self) -> float | None:
        if not self.retain_before:
            return None
        return self.retain_after["token_f1"] - self.retain_before["token_f1"]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["delta_token_f1"] = round(self.delta, 2)
        rd = self.retain_delta
        data["retain_delta_token_f1"] = None if rd is None else round(rd, 2)
        return data

    def render(self) -> str:
        lines = [f"run {self.run}", f"eval set {self.eval_set} ({self.before['n']} questions)",
                 f"  {'':8} {'EM':>7} {'F1':>7} {'refusals':>9}"]
        for label, s in (("before", self.before), ("after", self.after)):
            lines.append(f"  {label:8} {s['exact_match']:7.1f} {s['token_f1']:7.1f} "
                         f"{s['refusal_rate']:8.1f}%")
        lines.append(f"  delta F1 {self.delta:+.1f}")
        if self.retain_before:
            lines.append(f"retain set {self.retain_set} ({self.retain_before['n']} questions)")
            for label, s in (("before", self.retain_before), ("after", self.retain_after)):
                lines.append(f"  {label:8} {s['exact_match']:7.1f} {s['token_f1']:7.1f}")
            lines.append(f"  delta F1 {self.retain_delta:+.1f} (threshold -{self.threshold:g})")
        else:
            lines.append("retain set: none (set finetune.retain_set in the profile, or --retain)")
        lines += [f"WARNING: {w}" for w in self.warnings]
        return "\n".join(lines)


def check_run(run: Run | str, *, eval_set: str | Path | None = None,
              retain_set: str | Path | None = None, threshold: float = 2.0, limit: int = 0,
              prompt: PromptConfig | None = None, max_tokens: int = 48, threads: int = 0,
              progress: bool = True, log: Callable[[str], None] = print) -> CheckReport:
    """Score the base and the tuned model of ``run`` on the eval set and the retain set.

    Args:
        run: the run or its name.
        eval_set: the questions (default: the held-out split written next to the training data).
        retain_set: a set of another task for the forgetting check ("" or None: skipped).
        threshold: warn when the retain F1 drops by more than this many points.
        limit: score at most this many rows of each set (0: all).
        prompt: the prompt (default: the one the run was trained with).
        max_tokens: the longest answer generated.
        threads: llama.cpp threads (0: default).
        progress: show progress bars.
        log: where progress lines go.

    Raises:
        AppkitError: no eval set found, an unfinished run.
    """
    from finetune.trainer import TrainConfig

    run = run if isinstance(run, Run) else Run.open(run)
    info = run.info
    config = TrainConfig.from_dict(info["config"])
    prompt = prompt or config.prompt
    if eval_set is None:
        candidate = Path(info.get("data", "")).with_name("heldout.jsonl")
        if not candidate.exists():
            raise AppkitError(f"no eval set given and no held-out split at {candidate}; "
                              "pass --eval FILE")
        eval_set = candidate
    rows = rows_from_testset(eval_set)
    if limit:
        rows = rows[:limit]
    retain_rows = rows_from_testset(retain_set) if retain_set else []
    if limit:
        retain_rows = retain_rows[:limit]
    tuned_path, adapter = tuned_model_files(run, log=log)
    base_gguf = info["base_gguf"]
    before_m = make_model(base_gguf, max_tokens=max_tokens, threads=threads)
    after_m = make_model(str(tuned_path), lora_path=str(adapter or ""), max_tokens=max_tokens,
                         threads=threads)
    before = score_rows(before_m, rows, prompt=prompt, progress=progress, desc="base")
    after = score_rows(after_m, rows, prompt=prompt, progress=progress, desc="tuned")
    report = CheckReport(run.name, str(eval_set), before.summary(), after.summary(),
                         threshold=threshold)
    if retain_rows:
        rb = score_rows(before_m, retain_rows, prompt=prompt, progress=progress,
                        desc="base, retain")
        ra = score_rows(after_m, retain_rows, prompt=prompt, progress=progress,
                        desc="tuned, retain")
        report.retain_set, report.retain_before, report.retain_after = (
            str(retain_set), rb.summary(), ra.summary())
        if report.retain_delta is not None and report.retain_delta < -threshold:
            report.warnings.append(
                f"the retain set's F1 fell by {-report.retain_delta:.1f} points (more than "
                f"{threshold:g}): the tuned model forgot some of the other task")
    if report.delta < 0:
        report.warnings.append(f"the tuned model scores {-report.delta:.1f} F1 points below the "
                               "base on the eval set")
    run.update(metrics={"eval_set": str(eval_set), "token_f1_before": before.token_f1,
                        "token_f1_after": after.token_f1,
                        "retain_delta": report.retain_delta,
                        "checked": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return report
