"""Domain adaptation on CPU: fine-tune the embedder and train a cross-encoder reranker from MiniLM.

Both learn from query/passage pairs in a JSON-lines file, one object per line::

    {"query": "does aspirin prevent colon cancer?", "positive": "<passage text>",
     "negatives": ["<a passage that does not answer it>", ...]}

``negatives`` is optional. Pairs come from the user's relevance judgements (:func:`pairs_from_qrels`,
BEIR layout: ``queries.jsonl``, ``corpus.jsonl``, ``qrels/*.tsv``; hard negatives are mined with
BM25) or are synthetic: the local chat model writes a question for chunks of the user's own store
(:func:`synthetic_pairs`).

* The **embedder** is fine-tuned with sentence-transformers' ``MultipleNegativesRankingLoss``: each
  query must pick its passage among every other passage in the batch (and its hard negative).
* The **reranker** is a sentence-transformers ``CrossEncoder`` started from the same MiniLM weights
  with a fresh one-logit head, trained with ``BinaryCrossEntropyLoss`` on positives and negatives.

Each trained model is saved under the appkit model cache and registered in the catalogue with its
lineage (base model, sha256 of the pairs file, pair count, settings, seconds), so a profile can name
it: ``embedding.model = "<name>"`` (then ``appkit ingest --reembed``) or
``retrievers.rerank_model = "<name>"``.

Example:
    >>> from retrievers.train import read_pairs
    >>> read_pairs("pairs.jsonl")[0]["query"]  # doctest: +SKIP
    'does aspirin prevent colon cancer?'
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from appkit.errors import AppkitError
from appkit.jsonl import read_jsonl
from appkit.lazy import require

DEFAULT_BASE = "all-minilm-l6-v2"


# --- pairs -----------------------------------------------------------------------------------------


def read_pairs(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read and check a pairs file.

    Raises:
        AppkitError: naming the file and line of a malformed pair.
    """
    p = Path(path)
    pairs = []
    for n, row in read_jsonl(p, "pairs file"):
        for key in ("query", "positive"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise AppkitError(f"{p}, line {n}: '{key}' must be non-empty text")
        negs = row.get("negatives", [])
        if not isinstance(negs, list) or not all(isinstance(x, str) for x in negs):
            raise AppkitError(f"{p}, line {n}: 'negatives' must be a list of texts")
        pairs.append({"query": row["query"], "positive": row["positive"], "negatives": negs})
    if not pairs:
        raise AppkitError(f"{p} holds no pairs")
    return pairs


def write_pairs(pairs: Iterable[dict[str, Any]], path: str | os.PathLike) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "w", encoding="utf-8") as fh:
        for row in pairs:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return p


def _read_jsonl(path: Path) -> Iterable[dict]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def read_qrels(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """BEIR qrels (``query-id corpus-id score``, tab-separated, header row) as {qid: {docid: rel}}."""
    out: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            parts = line.rstrip("\n").split("\t")
            if n == 1 and not parts[-1].strip().lstrip("-").isdigit():
                continue  # header
            if len(parts) < 3:
                raise AppkitError(f"{path}, line {n}: expected query-id, corpus-id, score")
            out.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    return out


def doc_text(doc: dict) -> str:
    """A BEIR corpus entry as one passage: title and text."""
    return f"{doc.get('title', '')} {doc.get('text', '')}".strip()


def pairs_from_qrels(qrels: str | os.PathLike | dict, queries: str | os.PathLike,
                     corpus: str | os.PathLike, *, negatives: int = 3,
                     ranked: dict[str, list[str]] | None = None,
                     skip_top: int = 0, seed: int = 0) -> list[dict[str, Any]]:
    """Pairs from relevance judgements, with hard negatives.

    Args:
        qrels: a qrels file or {qid: {docid: relevance}}; only relevance > 0 makes a pair.
        queries: BEIR ``queries.jsonl``.
        corpus: BEIR ``corpus.jsonl``.
        negatives: hard negatives per pair: top-ranked passages that are not judged relevant.
        ranked: {qid: [docid, ...]} rankings to mine negatives from (default: BM25 over the corpus).
        skip_top: ranks to skip before taking negatives (unjudged top hits are often relevant).
        seed: for the order of pairs.
    """
    judged = qrels if isinstance(qrels, dict) else read_qrels(qrels)
    qtext = {str(q["_id"]): q["text"] for q in _read_jsonl(Path(queries))}
    docs = {str(d["_id"]): doc_text(d) for d in _read_jsonl(Path(corpus))}
    missing = [q for q in judged if q not in qtext]
    if missing:
        raise AppkitError(f"query id {missing[0]} of the qrels is not in {queries}")
    if negatives and ranked is None:
        ranked = _bm25_rankings({q: qtext[q] for q in judged}, docs, negatives + skip_top + 10)
    pairs = []
    for qid, rels in judged.items():
        positives = [d for d, r in rels.items() if r > 0 and d in docs]
        pool = [d for d in (ranked or {}).get(qid, [])[skip_top:] if d not in rels]
        for d in positives:
            pairs.append({"query": qtext[qid], "positive": docs[d],
                          "negatives": [docs[x] for x in pool[:negatives]], "query_id": qid,
                          "doc_id": d})
    random.Random(seed).shuffle(pairs)
    return pairs


def _bm25_rankings(queries: dict[str, str], docs: dict[str, str], k: int) -> dict[str, list[str]]:
    bm25s = require("bm25s", extra="retrievers")
    stemmer = require("Stemmer", extra="retrievers", package="PyStemmer").Stemmer("english")
    ids = list(docs)
    index = bm25s.BM25()
    index.index(bm25s.tokenize([docs[i] for i in ids], stopwords="en", stemmer=stemmer,
                               show_progress=False), show_progress=False)
    qids = list(queries)
    tokens = bm25s.tokenize([queries[q] for q in qids], stopwords="en", stemmer=stemmer,
                            show_progress=False)
    found, _ = index.retrieve(tokens, k=min(k, len(ids)), show_progress=False)
    return {q: [ids[int(j)] for j in row] for q, row in zip(qids, found)}


SYNTH_SYSTEM = (
    "Write one question that the passage answers. The question must make sense without the "
    "passage. Reply with the question only."
)


def synthetic_pairs(store: Any, llm: Any, n: int, *, seed: int = 0, negatives: int = 3,
                    progress: Callable[[int, int], None] | None = None) -> list[dict[str, Any]]:
    """Questions written by the chat model for ``n`` random chunks of the store, as pairs.

    Negatives are other sampled chunks (easy negatives); a chunk whose question comes back empty is
    skipped.
    """
    from langchain_core.messages import HumanMessage, SystemMessage

    total = store.count()
    if total == 0:
        raise AppkitError("the store is empty: ingest documents before generating pairs")
    res = store.collection.get(include=["documents"])
    rng = random.Random(seed)
    picked = rng.sample(range(len(res["ids"])), min(n, len(res["ids"])))
    texts = [res["documents"][i] or "" for i in picked]
    pairs = []
    for j, text in enumerate(texts):
        reply = llm.invoke([SystemMessage(SYNTH_SYSTEM), HumanMessage(text[:1500])],
                           max_tokens=48, temperature=0.0)
        question = (reply.text.strip().splitlines() or [""])[0].strip().strip('"')
        if len(question) > 8:
            others = [t for i, t in enumerate(texts) if i != j]
            pairs.append({"query": question, "positive": text,
                          "negatives": rng.sample(others, min(negatives, len(others)))})
        if progress:
            progress(j + 1, len(texts))
    return pairs


# --- training --------------------------------------------------------------------------------------


def _sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _base_path(base: str) -> str:
    from appkit.models.catalogue import resolve_model

    _, path = resolve_model(base)
    return str(path)


def _save_to(out_dir: Path, save: Callable[[str], None]) -> None:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    save(str(tmp))
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)


def _args(cls: Any, **kwargs: Any) -> Any:
    tmp = tempfile.mkdtemp(prefix="appkit-train-")
    return cls(output_dir=tmp, use_cpu=True, save_strategy="no", report_to="none",
               logging_steps=10, disable_tqdm=True, dataloader_num_workers=0, **kwargs)


def train_encoder(pairs: Sequence[dict[str, Any]], out_dir: str | os.PathLike, *,
                  base: str = DEFAULT_BASE, epochs: float = 3.0, batch_size: int = 32,
                  learning_rate: float = 2e-5, max_seq_length: int = 256,
                  hard_negatives: bool = True, seed: int = 0) -> dict[str, Any]:
    """Fine-tune a sentence-transformers embedder with MultipleNegativesRankingLoss.

    Args:
        pairs: from :func:`read_pairs`; the first negative of each pair is used as a hard negative.
        out_dir: where the model is saved (replaced atomically).
        base: catalogue name or folder of the model to start from.
        epochs, batch_size, learning_rate, max_seq_length, seed: training settings.
        hard_negatives: use each pair's first negative (pairs without one are dropped then).

    Returns:
        Training facts for the model's lineage.
    """
    st = require("sentence_transformers", extra="embed")
    datasets = require("datasets", extra="retrievers")
    from sentence_transformers.losses import MultipleNegativesRankingLoss
    from sentence_transformers.training_args import BatchSamplers

    rows = [p for p in pairs if p["negatives"]] if hard_negatives else list(pairs)
    if hard_negatives and len(rows) < len(pairs) // 2:
        rows, hard_negatives = list(pairs), False  # too few negatives: in-batch ones only
    data = {"anchor": [p["query"] for p in rows], "positive": [p["positive"] for p in rows]}
    if hard_negatives:
        data["negative"] = [p["negatives"][0] for p in rows]
    model = st.SentenceTransformer(_base_path(base), device="cpu", local_files_only=True)
    model.max_seq_length = max_seq_length
    args = _args(st.SentenceTransformerTrainingArguments, num_train_epochs=epochs,
                 per_device_train_batch_size=batch_size, learning_rate=learning_rate,
                 warmup_steps=0.1, seed=seed, batch_sampler=BatchSamplers.NO_DUPLICATES)
    t0 = time.perf_counter()
    trainer = st.SentenceTransformerTrainer(model=model, args=args,
                                            train_dataset=datasets.Dataset.from_dict(data),
                                            loss=MultipleNegativesRankingLoss(model))
    trainer.train()
    seconds = time.perf_counter() - t0
    _save_to(Path(out_dir), model.save)
    shutil.rmtree(args.output_dir, ignore_errors=True)
    return {"loss": "MultipleNegativesRankingLoss", "pairs": len(rows), "epochs": epochs,
            "batch_size": batch_size, "learning_rate": learning_rate,
            "hard_negatives": hard_negatives, "max_seq_length": max_seq_length,
            "seconds": round(seconds, 1)}


def train_reranker(pairs: Sequence[dict[str, Any]], out_dir: str | os.PathLike, *,
                   base: str = DEFAULT_BASE, epochs: float = 1.0, batch_size: int = 16,
                   learning_rate: float = 3e-5, max_length: int = 256, negatives: int = 3,
                   seed: int = 0) -> dict[str, Any]:
    """Train a cross-encoder reranker from an encoder checkpoint with BinaryCrossEntropyLoss.

    Each pair gives one positive example and up to ``negatives`` negative ones (its own negatives,
    topped up with other pairs' positives).

    Returns:
        Training facts for the model's lineage.
    """
    st = require("sentence_transformers", extra="embed")
    datasets = require("datasets", extra="retrievers")
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    rng = random.Random(seed)
    all_pos = [p["positive"] for p in pairs]
    q, d, y = [], [], []
    for p in pairs:
        negs = list(p["negatives"][:negatives])
        while len(negs) < negatives and len(all_pos) > 1:
            other = rng.choice(all_pos)
            if other != p["positive"]:
                negs.append(other)
        q.append(p["query"]), d.append(p["positive"]), y.append(1.0)
        for n in negs:
            q.append(p["query"]), d.append(n), y.append(0.0)
    order = list(range(len(q)))
    rng.shuffle(order)
    data = {"query": [q[i] for i in order], "passage": [d[i] for i in order],
            "label": [y[i] for i in order]}
    model = st.CrossEncoder(_base_path(base), num_labels=1, max_length=max_length, device="cpu",
                            local_files_only=True)
    pos_weight = max(1.0, (len(y) - sum(y)) / max(1.0, sum(y)))
    import torch

    loss = BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(pos_weight))
    args = _args(st.CrossEncoderTrainingArguments, num_train_epochs=epochs,
                 per_device_train_batch_size=batch_size, learning_rate=learning_rate,
                 warmup_steps=0.1, seed=seed)
    t0 = time.perf_counter()
    trainer = st.CrossEncoderTrainer(model=model, args=args,
                                     train_dataset=datasets.Dataset.from_dict(data), loss=loss)
    trainer.train()
    seconds = time.perf_counter() - t0
    _save_to(Path(out_dir), model.save)
    shutil.rmtree(args.output_dir, ignore_errors=True)
    return {"loss": "BinaryCrossEntropyLoss", "examples": len(y), "positives": int(sum(y)),
            "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
            "max_length": max_length, "seconds": round(seconds, 1)}


def tuned_dir(name: str) -> Path:
    """Where a tuned model named ``name`` is kept (under the appkit model cache)."""
    from appkit.models.catalogue import cache_dir

    return cache_dir() / "tuned" / name


def register_trained(name: str, role: str, path: str | os.PathLike, *, base: str,
                     pairs_file: str | os.PathLike | None, facts: dict[str, Any],
                     description: str) -> Any:
    """Put a trained model in the catalogue (persisted), with its lineage."""
    from appkit.models.catalogue import ModelSpec, register_model

    lineage = {"base": base, "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
               **facts}
    if pairs_file:
        lineage.update(pairs_file=str(Path(pairs_file).resolve()),
                       pairs_sha256=_sha256(pairs_file))
    spec = ModelSpec(name=name, role=role, format="sentence-transformers",  # type: ignore[arg-type]
                     local_path=str(Path(path).resolve()), description=description,
                     lineage=lineage)
    return register_model(spec, persist=True)
