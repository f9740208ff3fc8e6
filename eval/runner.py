"""Run the app's own chain over a test set, score it, and write a run directory.

Each case goes through ``app.chain`` exactly as ``appkit ask`` would (the profile's model, retriever
and prompt); the chunks the retriever returned and the ones given to the model are captured with a
LangChain callback. Outputs are cached by a hash of the input (the question, its history and a
fingerprint of everything that shapes the answer: the profile's model, generation, retrieval and
prompt settings and the index generation), so re-running unchanged cases costs nothing. Judge calls
are cached the same way by ragas (see :mod:`eval.judge`).

A run directory holds ``cases.jsonl`` (one line per case: the answer, its contexts, every score
with its status and reason), ``summary.json`` (means, counts, failures, the judge and its agreement
with hand labels, timings) and ``report.html``.

Example:
    >>> from appkit.app import App
    >>> from appkit.testing import FakeChatModel, HashingEmbeddings
    >>> from eval.runner import EvalRunner
    >>> from eval.testset import TestCase
    >>> app = App(profile, embeddings=HashingEmbeddings(), chat_model=FakeChatModel())  # doctest: +SKIP
    >>> result = EvalRunner(app, metrics=["token_f1"]).run(
    ...     [TestCase("How much is the budget?", "40k")], "runs/first")  # doctest: +SKIP
    >>> result.summary["metrics"]["token_f1"]["mean"]  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import re
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appkit.errors import AppkitError
from eval.metrics import (
    DEFAULT_METRICS,
    JUDGE_METRICS,
    Metric,
    MetricContext,
    Retrieved,
    Sample,
    Score,
    make_metrics,
)
from eval.testset import LineProblem, TestCase, testset_fingerprint

CACHE_VERSION = 1
_CITATION_MARK = re.compile(r"\s*\[\d{1,3}\](?:\s*\[\d{1,3}\])*")


def strip_citations(text: str) -> str:
    """The answer without its ``[n]`` markers, for comparing with reference answers."""
    return " ".join(_CITATION_MARK.sub("", text).split())


def eval_cache_dir(app: Any) -> Path:
    """Where a profile's evaluation caches live: ``<data dir>/eval-cache``."""
    return Path(app.profile.data_dir) / "eval-cache"


def default_runs_dir(app: Any) -> Path:
    """Where runs go unless told otherwise: ``eval-runs/`` next to the profile."""
    return Path(app.profile.root) / "eval-runs"


# --- capturing what the chain retrieved ------------------------------------------------------


def _capture_handler() -> Any:
    from langchain_core.callbacks import BaseCallbackHandler

    class RetrievalCapture(BaseCallbackHandler):
        """Keeps the documents of the outermost retriever call and every document by id."""

        def __init__(self) -> None:
            self.ranked: list[Any] = []
            self.by_id: dict[str, Any] = {}

        def on_retriever_end(self, documents: Sequence[Any], *, run_id: Any,
                             parent_run_id: Any = None, **kwargs: Any) -> None:
            for d in documents:
                self.by_id.setdefault(_doc_id(d), d)
            if parent_run_id is None:
                self.ranked = list(documents)

    return RetrievalCapture()


def _doc_id(doc: Any) -> str:
    return str(doc.id or doc.metadata.get("id", ""))


# --- one case's output -------------------------------------------------------------------------


@dataclass
class CaseOutput:
    """What the app produced for one case (this is what the output cache stores).

    Attributes:
        answer: the answer's text as the model wrote it (with ``[n]`` markers).
        found: false when nothing relevant was retrieved and the model was not called.
        contexts: the chunks given to the model: index, source, page, heading, chunk_id,
            relevance, cited and the full ``text``.
        retrieved: the retriever's ranking before any filtering: id, source, relevance.
        timings: the chain's per-step seconds.
        usage: token counts.
        model: the chat model's name.
        wall_s: seconds the case took when it was generated.
        error: why the app failed on this case ("" when it did not).
    """

    answer: str = ""
    found: bool = True
    contexts: list[dict[str, Any]] = field(default_factory=list)
    retrieved: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    usage: dict[str, int] = field(default_factory=dict)
    model: str = ""
    wall_s: float = 0.0
    error: str = ""
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data.pop("cached")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CaseOutput:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def sample(self, case: TestCase) -> Sample:
        """The :class:`Sample` metrics score: the answer without markers, next to the case."""
        retrieved = tuple(Retrieved(r.get("id", ""), r.get("source", ""), r.get("relevance", 0.0))
                          for r in self.retrieved)
        if not retrieved:
            retrieved = tuple(Retrieved(c.get("chunk_id", ""), c.get("source", ""),
                                        c.get("relevance", 0.0)) for c in self.contexts)
        return Sample(
            question=case.question,
            answer=strip_citations(self.answer),
            contexts=tuple(c.get("text", "") for c in self.contexts),
            cited=tuple(bool(c.get("cited")) for c in self.contexts),
            context_ids=tuple(c.get("chunk_id", "") for c in self.contexts),
            context_sources=tuple(c.get("source", "") for c in self.contexts),
            retrieved=retrieved,
            reference=case.reference,
            answers=case.answers,
            reference_contexts=case.reference_contexts,
            relevant_ids=case.relevant_ids,
            found=self.found,
            extra={**case.metadata, "answer_text": self.answer},
        )


class OutputCache:
    """Model outputs on disk, one JSON file per input hash.

    Example:
        >>> import tempfile
        >>> from eval.runner import CaseOutput, OutputCache
        >>> cache = OutputCache(tempfile.mkdtemp())
        >>> cache.put("k", CaseOutput(answer="hi"))
        >>> cache.get("k").answer
        'hi'
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> CaseOutput | None:
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        out = CaseOutput.from_dict(data)
        out.cached = True
        return out

    def put(self, key: str, output: CaseOutput) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(output.to_dict(), ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)


# Profile sections that shape an answer (others, such as a server's port, do not).
_ANSWER_SECTIONS = ("task", "chat", "embedding", "retrieval", "retrievers", "prompt")
_PINNED = {
    "chat": ("model", "n_ctx", "generation"),
    "prompt": ("mode", "system", "template", "examples"),
    "retrieval": ("retriever", "k", "chunk_size", "chunk_overlap", "min_relevance",
                  "condense_history"),
    "embedding": ("model",),
}


def _non_default(value: Any, default: Any) -> Any:
    """``value`` without the entries equal to ``default`` (nested tables recursively)."""
    if isinstance(value, dict) and isinstance(default, dict):
        out = {k: _non_default(v, default.get(k)) for k, v in value.items() if v != default.get(k)}
        return out
    return value


def app_fingerprint(app: Any) -> dict[str, Any]:
    """Everything outside the question that shapes an answer (hashed into cache keys).

    The settings that decide an answer are pinned by name (model, generation, prompt, retrieval,
    embedder); any other answer-shaping setting counts when it differs from its default, so a
    release that adds a setting with a default does not throw the cache away.
    """
    from appkit.config import Profile

    p = app.profile
    g = p.chat.generation
    pinned = {
        "chat": [p.chat.model, p.chat.n_ctx, g.max_tokens, g.temperature, g.top_k, g.top_p,
                 g.repeat_penalty, list(g.stop), g.seed],
        "prompt": [p.prompt.mode, p.prompt.system, p.prompt.template,
                   [list(e.__dict__.values()) for e in p.prompt.examples]],
        "retrieval": [p.retrieval.retriever, p.retrieval.k, p.retrieval.chunk_size,
                      p.retrieval.chunk_overlap, p.retrieval.min_relevance,
                      p.retrieval.condense_history],
        "embedding": p.embedding.model,
    }
    current, default = p.to_dict(), Profile().to_dict()
    for section, keys in _PINNED.items():  # pinned above in full; not again against defaults
        for key in keys:
            current[section].pop(key, None)
    other = {s: _non_default(current.get(s), default.get(s)) for s in _ANSWER_SECTIONS}
    llm = app._chat_model  # noqa: SLF001 - an injected model, read without loading the profile's
    model = (getattr(llm, "model_name", "") or type(llm).__name__) if llm is not None else ""
    emb = app._embeddings  # noqa: SLF001
    embedder = (getattr(emb, "identity", "") or type(emb).__name__) if emb is not None else ""
    index: dict[str, Any] = {}
    try:
        index["generation"] = app.ingestor.manifest.generation
    except Exception:  # noqa: BLE001 - a store without a manifest (remote Chroma)
        index["generation"] = None
    try:
        index["chunks"] = app.store.count()
    except Exception:  # noqa: BLE001
        index["chunks"] = None
    return {"pinned": pinned, "changed": other, "chat_model_override": model,
            "embedder_override": embedder, "index": index, "version": CACHE_VERSION}


def case_key(case: TestCase, fingerprint: dict[str, Any]) -> str:
    data = {"question": case.question, "history": [list(t) for t in case.history],
            "app": fingerprint}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def generate_one(app: Any, case: TestCase) -> CaseOutput:
    """Ask the app one case's question through its chain, capturing what was retrieved."""
    capture = _capture_handler()
    start = time.perf_counter()
    try:
        answer = app.chain.invoke(case.question, list(case.history),
                                  {"callbacks": [capture]})
    except AppkitError:
        raise
    except Exception as exc:  # noqa: BLE001 - one failing case is recorded, the run goes on
        return CaseOutput(error=f"{type(exc).__name__}: {exc}",
                          wall_s=time.perf_counter() - start)
    wall = time.perf_counter() - start
    contexts = []
    for c in answer.citations:
        doc = capture.by_id.get(c.chunk_id)
        text = doc.page_content if doc is not None else c.snippet
        contexts.append({"index": c.index, "source": c.source, "page": c.page,
                         "heading": c.heading, "chunk_id": c.chunk_id,
                         "relevance": round(c.relevance, 4), "cited": c.cited, "text": text})
    retrieved = [{"id": _doc_id(d), "source": str(d.metadata.get("source", "")),
                  "relevance": round(float(d.metadata.get("relevance", 0.0)), 4)}
                 for d in capture.ranked]
    return CaseOutput(answer=answer.text, found=answer.found, contexts=contexts,
                      retrieved=retrieved, timings={k: round(v, 4) for k, v in answer.timings.items()},
                      usage=dict(answer.usage), model=answer.model, wall_s=round(wall, 4))


# --- the runner --------------------------------------------------------------------------------


@dataclass
class RunResult:
    """A finished run: where it was written, its summary and its per-case records."""

    run_dir: Path
    summary: dict[str, Any]
    cases: list[dict[str, Any]]


class EvalRunner:
    """Evaluate an :class:`~appkit.app.App` on a test set.

    Example:
        >>> from eval.runner import EvalRunner
        >>> runner = EvalRunner(app, metrics=["token_f1", "faithfulness"], judge="smollm2-135m")  # doctest: +SKIP
        >>> runner.run(cases, "eval-runs/baseline").summary["metrics"]  # doctest: +SKIP

    Args:
        app: the app whose chain is evaluated.
        metrics: metric names (default: :data:`~eval.metrics.DEFAULT_METRICS` plus the judge
            metrics the profile's ``[quality_gate]`` names).
        judge: a judge name, endpoint or :class:`~eval.judge.Judge` (default: the best installed
            local model); only started when a judge metric is scored.
        use_cache: reuse cached model outputs and judge calls.
        cache_dir: the cache folder (default ``<data dir>/eval-cache``).
        judge_check: measure the judge's agreement with the hand-labelled set (cached per judge).
        progress: show progress bars.
    """

    def __init__(self, app: Any, *, metrics: Sequence[str] | None = None, judge: Any = None,
                 use_cache: bool = True, cache_dir: str | os.PathLike | None = None,
                 judge_check: bool = True, progress: bool = True):
        self.app = app
        names = list(metrics) if metrics else default_metric_names(app.profile)
        self.metric_names = list(dict.fromkeys(names))
        self.use_cache = use_cache
        self.cache_dir = Path(cache_dir) if cache_dir else eval_cache_dir(app)
        self._judge_arg = judge
        self._judge: Any = None
        self.judge_check = judge_check
        self.progress = progress

    @property
    def needs_judge(self) -> bool:
        return any(n in JUDGE_METRICS for n in self.metric_names)

    def judge(self) -> Any:
        """The judge (created on first use; its server starts on its first call)."""
        if self._judge is None:
            from eval.judge import Judge

            if self._judge_arg is not None and not isinstance(self._judge_arg, str):
                self._judge = self._judge_arg  # a Judge, or anything with its interface
            else:
                self._judge = Judge(self._judge_arg, cache_dir=(
                    self.cache_dir / "judge" if self.use_cache else None))
        return self._judge

    def _reward_model(self) -> Any:
        """The profile's reward model (``chat.reward_model``), or None when it names none."""
        name = self.app.profile.chat.reward_model
        if not name:
            return None
        from appkit.models.reward import load_reward_model

        return load_reward_model(name)

    def metrics(self) -> list[Metric]:
        ctx = MetricContext(judge=self.judge, embeddings=lambda: self.app.embeddings,
                            reward=self._reward_model)
        return make_metrics(self.metric_names, ctx)

    def _bar(self, total: int, desc: str) -> Any:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit="case", disable=not self.progress, leave=False)

    def generate(self, cases: Sequence[TestCase]) -> list[CaseOutput]:
        """The app's output for every case, from the cache where the input is unchanged."""
        cache = OutputCache(self.cache_dir / "outputs")
        fingerprint = app_fingerprint(self.app)
        outputs = []
        with self._bar(len(cases), "answering") as bar:
            for case in cases:
                key = case_key(case, fingerprint)
                out = cache.get(key) if self.use_cache else None
                if out is None:
                    out = generate_one(self.app, case)
                    if not out.error:
                        cache.put(key, out)
                outputs.append(out)
                bar.update(1)
        return outputs

    def score(self, cases: Sequence[TestCase], outputs: Sequence[CaseOutput]
              ) -> dict[str, list[Score]]:
        """Every metric's score for every case (an app failure fails every metric of its case)."""
        samples = [o.sample(c) for c, o in zip(cases, outputs)]
        live = [i for i, o in enumerate(outputs) if not o.error]
        scores: dict[str, list[Score]] = {}
        for metric in self.metrics():
            desc = f"{metric.name} (judge)" if metric.uses_judge else metric.name
            with self._bar(len(live), desc) as bar:
                got = metric.score_many([samples[i] for i in live], bar.update)
            column = [Score.failed(f"the app failed: {o.error}") for o in outputs]
            for i, s in zip(live, got):
                column[i] = s
            scores[metric.name] = column
        return scores

    def run(self, cases: Sequence[TestCase], out_dir: str | os.PathLike | None = None, *,
            testset_path: str | None = None, problems: Sequence[LineProblem] = ()) -> RunResult:
        """Answer, score, and write the run directory (``cases.jsonl``, ``summary.json``,
        ``report.html``)."""
        if not cases:
            raise AppkitError("the test set is empty")
        started = time.perf_counter()
        run_dir = Path(out_dir) if out_dir else default_runs_dir(self.app) / _run_name(testset_path)
        run_dir.mkdir(parents=True, exist_ok=True)
        try:
            outputs = self.generate(cases)
            generated_s = time.perf_counter() - started
            scores = self.score(cases, outputs)
            agreement = None
            if self.needs_judge and self.judge_check:
                from eval.judge_check import check_judge

                agreement = check_judge(self.judge(), cache_dir=self.cache_dir / "judge",
                                        progress=self.progress).to_dict()
        finally:
            if self._judge is not None and self._judge is not self._judge_arg:
                self._judge.close()
        records = [_record(c, o, {n: col[i] for n, col in scores.items()})
                   for i, (c, o) in enumerate(zip(cases, outputs))]
        summary = summarize(records, list(scores))
        summary.update({
            "created": dt.datetime.now().isoformat(timespec="seconds"),
            "testset": {"path": testset_path, "cases": len(cases),
                        "fingerprint": testset_fingerprint(cases),
                        "skipped_lines": [str(p) for p in problems]},
            "app": _app_info(self.app, outputs),
            "timing": {
                "total_s": round(time.perf_counter() - started, 2),
                "answering_s": round(generated_s, 2),
                "generated": sum(not o.cached for o in outputs),
                "cached": sum(o.cached for o in outputs),
                "mean_case_s": round(statistics.fmean([o.wall_s for o in outputs]), 3),
                "app_failures": sum(bool(o.error) for o in outputs),
            },
        })
        if self.needs_judge:
            judge = self.judge()
            summary["judge"] = {"name": judge.name, "caveat": judge.caveat,
                                "agreement": agreement}
        write_run(run_dir, records, summary)
        return RunResult(run_dir, summary, records)


def default_metric_names(profile: Any) -> list[str]:
    """The cheap default metrics plus every judge metric the profile's quality gate names."""
    gated = [m for m in profile.quality_gate if m in JUDGE_METRICS]
    return [*DEFAULT_METRICS, *gated]


def _run_name(testset_path: str | None) -> str:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    stem = Path(testset_path).stem if testset_path else "run"
    return f"{stamp}-{re.sub(r'[^A-Za-z0-9._-]+', '_', stem)}"


def _app_info(app: Any, outputs: Sequence[CaseOutput]) -> dict[str, Any]:
    p = app.profile
    models = Counter(o.model for o in outputs if o.model)
    injected = app._chat_model  # noqa: SLF001 - a model passed in, not the profile's
    fallback = (getattr(injected, "model_name", "") or type(injected).__name__
                if injected is not None else p.chat.model)
    return {
        "profile": str(p.source) if p.source else None,
        "chat_model": models.most_common(1)[0][0] if models else fallback,
        "embedding_model": p.embedding.model,
        "retriever": p.retrieval.retriever,
        "k": p.retrieval.k,
        "prompt_mode": p.prompt.mode,
        "settings": {k: v for k, v in p.to_dict().items() if k != "quality_gate"},
    }


def _record(case: TestCase, out: CaseOutput, scores: dict[str, Score]) -> dict[str, Any]:
    return {
        "id": case.id, "question": case.question, "task": case.task,
        "reference": case.reference, "answers": list(case.answers),
        "relevant_ids": list(case.relevant_ids),
        "answer": out.answer, "found": out.found, "error": out.error,
        "contexts": out.contexts, "retrieved": out.retrieved,
        "scores": {n: s.to_dict() for n, s in scores.items()},
        "timings": out.timings, "usage": out.usage, "model": out.model,
        "wall_s": out.wall_s, "cached": out.cached,
    }


def summarize(records: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """Per metric: mean over scored cases, how many were scored, not applicable or failed, and
    the commonest failure reasons."""
    metrics = {}
    for name in names:
        values, na, errors = [], 0, Counter()
        for r in records:
            s = r["scores"].get(name)
            if s is None:
                continue
            if s["status"] == "ok":
                values.append(s["value"])
            elif s["status"] == "n/a":
                na += 1
            else:
                errors[s.get("reason", "")[:160]] += 1
        metrics[name] = {
            "mean": round(statistics.fmean(values), 4) if values else None,
            "std": round(statistics.pstdev(values), 4) if len(values) > 1 else None,
            "scored": len(values), "not_applicable": na, "failed": sum(errors.values()),
            "failures": [{"reason": k, "count": v} for k, v in errors.most_common(3)],
        }
    return {"metrics": metrics}


def write_run(run_dir: Path, records: Sequence[dict[str, Any]], summary: dict[str, Any]) -> None:
    """Write ``cases.jsonl``, ``summary.json`` and ``report.html`` into ``run_dir``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "cases.jsonl", "w", encoding="utf-8") as fh:
        for r in records:
            fh.write(json.dumps(r, ensure_ascii=False, default=_json_default) + "\n")
    (run_dir / "summary.json").write_text(
        json.dumps(summary, indent=2, ensure_ascii=False, default=_json_default), encoding="utf-8")
    from eval.report import write_report

    write_report(run_dir, records, summary)


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return str(value)


def load_run(run_dir: str | os.PathLike) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Read a run directory's summary and cases.

    Raises:
        AppkitError: when the folder is not a run directory.
    """
    d = Path(run_dir)
    try:
        summary = json.loads((d / "summary.json").read_text(encoding="utf-8"))
        cases = [json.loads(line) for line in
                 (d / "cases.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    except FileNotFoundError:
        raise AppkitError(f"{d} is not an eval run directory (no summary.json or cases.jsonl); "
                          "make one with 'appkit eval run TESTSET'") from None
    except (OSError, ValueError) as exc:
        raise AppkitError(f"cannot read the run {d} ({exc})") from exc
    return summary, cases
