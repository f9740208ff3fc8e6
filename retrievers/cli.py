"""Commands this layer adds to ``appkit`` (entry point ``appkit.commands: retrievers``).

* ``appkit search "query" --retriever hybrid --k 10`` prints ranked chunks with their scores.
* ``appkit retrievers list`` shows the registered retrievers.
* ``appkit retrievers pairs`` writes training pairs from qrels or synthetic questions.
* ``appkit retrievers train --pairs pairs.jsonl`` fine-tunes the embedder and trains a cross-encoder
  reranker on CPU, and registers both in the model catalogue.

Nothing heavy is imported until a command runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any

from appkit.errors import AppkitError


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    """Add ``search`` and ``retrievers`` to the ``appkit`` command line."""
    p = subparsers.add_parser("search", parents=[common],
                              help="ranked chunks for a query, with scores (no chat model)")
    p.add_argument("query", nargs="+")
    p.add_argument("--retriever", "-r", help="a registered retriever (default: the profile's)")
    p.add_argument("--k", "-k", type=int, help="how many chunks (default: retrieval.k)")
    p.add_argument("--source", action="append", help="only chunks of this file (repeatable)")
    p.add_argument("--type", dest="file_type", action="append",
                   help="only this file type, e.g. pdf (repeatable)")
    p.add_argument("--after", help="only files modified on or after this date (YYYY-MM-DD)")
    p.add_argument("--before", help="only files modified before this date (YYYY-MM-DD)")
    p.add_argument("--where", help="a raw Chroma metadata filter as JSON")
    p.add_argument("--chars", type=int, default=300, help="characters of each chunk to show")
    p.set_defaults(func=cmd_search)

    r = subparsers.add_parser("retrievers", help="list retrievers, make pairs, train models")
    rsub = r.add_subparsers(dest="action", metavar="ACTION")

    p = rsub.add_parser("list", parents=[common], help="registered retriever names")
    p.set_defaults(func=cmd_list)

    p = rsub.add_parser("pairs", parents=[common],
                        help="write query/passage pairs from qrels or synthetic questions")
    p.add_argument("--out", "-o", required=True, help="the pairs file to write (JSON lines)")
    p.add_argument("--qrels", help="BEIR qrels TSV (query-id, corpus-id, score)")
    p.add_argument("--queries", help="BEIR queries.jsonl (with --qrels)")
    p.add_argument("--corpus", help="BEIR corpus.jsonl (with --qrels)")
    p.add_argument("--synthetic", type=int, metavar="N",
                   help="instead: N questions written by the chat model over the profile's chunks")
    p.add_argument("--negatives", type=int, default=3, help="hard negatives per pair")
    p.set_defaults(func=cmd_pairs)

    p = rsub.add_parser("train", parents=[common],
                        help="fine-tune the embedder and train a cross-encoder reranker (CPU)")
    p.add_argument("--pairs", required=True, help="JSON lines: query, positive[, negatives]")
    p.add_argument("--what", choices=["both", "encoder", "reranker"], default="both")
    p.add_argument("--name", default="", help="name prefix of the trained models "
                   "(default: from the pairs file); they are NAME-encoder and NAME-reranker")
    p.add_argument("--base", default="all-minilm-l6-v2", help="model to start from")
    p.add_argument("--epochs", type=float, default=3.0,
                   help="passes over the pairs (SciFact's 743 pairs: 1 epoch test nDCG@10 0.671, "
                   "3 epochs 0.705, benchmarks/RESULTS_retrievers.md)")
    p.add_argument("--reranker-epochs", type=float, default=None,
                   help="epochs for the reranker (default: --epochs)")
    p.add_argument("--batch-size", type=int, default=32, help="encoder batch (in-batch negatives)")
    p.add_argument("--reranker-lr", type=float, default=3e-5,
                   help="learning rate of the reranker (its one-logit head starts untrained; a few "
                   "hundred steps need a higher rate than the default)")
    p.add_argument("--max-pairs", type=int, default=0, help="use at most this many pairs")
    p.add_argument("--negatives", type=int, default=3,
                   help="negatives per pair for the reranker (the encoder uses the first)")
    p.add_argument("--max-length", type=int, default=256,
                   help="tokens per text (encoder) or per query+passage pair (reranker)")
    p.add_argument("--use", action="store_true",
                   help="also write the trained models' names into the profile")
    p.set_defaults(func=cmd_train)
    r.set_defaults(func=lambda args: (r.print_help(), 0)[1])


def _app(args: argparse.Namespace) -> Any:
    from appkit.app import App

    return App.from_profile_file(args.profile)


def _where(args: argparse.Namespace, app: Any) -> dict | None:
    from retrievers.filters import build_where

    raw = None
    if args.where:
        try:
            raw = json.loads(args.where)
        except json.JSONDecodeError as exc:
            raise AppkitError(f"--where is not JSON: {exc.msg}") from exc
    manifest = app.ingestor.manifest if (args.after or args.before) else None
    sources = [os.path.abspath(os.path.expanduser(s)) for s in args.source or []]
    return build_where(source=sources or None, file_type=args.file_type, modified_after=args.after,
                       modified_before=args.before, manifest=manifest, where=raw)


def cmd_search(args: argparse.Namespace) -> int:
    from appkit.retrieval import RetrieverContext, make_retriever
    from retrievers.registry import set_filter

    query = " ".join(args.query)
    app = _app(args)
    profile = app.profile
    if args.k is not None:
        if args.k < 1:
            raise AppkitError("--k must be at least 1")
        profile = dataclasses.replace(profile, retrieval=dataclasses.replace(profile.retrieval,
                                                                             k=args.k))
    ctx = RetrieverContext(profile, app.store, lambda: app.chat_model)
    retriever = make_retriever(ctx, args.retriever)
    where = _where(args, app)
    if where:
        set_filter(retriever, where)
    docs = retriever.invoke(query)
    if args.json:
        print(json.dumps([{"rank": i, "id": d.id, "score": d.metadata.get("score"),
                           "relevance": d.metadata.get("relevance"), "text": d.page_content,
                           "metadata": d.metadata} for i, d in enumerate(docs, 1)],
                         indent=2, ensure_ascii=False, default=str))
        return 0
    name = args.retriever or profile.retrieval.retriever
    if not docs:
        print(f"no chunks found ({name}, {app.store.count()} chunks in the store)")
        return 0
    print(f"{len(docs)} chunks ({name})")
    for i, d in enumerate(docs, 1):
        m = d.metadata
        score = m.get("score", m.get("relevance"))
        rel = m.get("relevance")
        where_from = os.path.basename(str(m.get("source", "")))
        if m.get("page") is not None:
            where_from += f":{m['page']}"
        elif m.get("chunk_index") is not None:
            where_from += f" #{m['chunk_index']}"
        text = " ".join(d.page_content.split())
        text = text[: args.chars] + ("…" if len(text) > args.chars else "")
        print(f"\n{i:>3}. score {score:.4f}" + (f"  cosine {rel:.3f}" if rel is not None else "")
              + f"  {where_from}")
        print(f"     {text}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from appkit.retrieval import retriever_names

    names = retriever_names()
    if args.json:
        print(json.dumps(names))
    else:
        print("\n".join(names))
    return 0


def cmd_pairs(args: argparse.Namespace) -> int:
    from retrievers.train import pairs_from_qrels, synthetic_pairs, write_pairs

    if args.synthetic:
        app = _app(args)
        pairs = synthetic_pairs(app.store, app.chat_model, args.synthetic,
                                negatives=args.negatives,
                                progress=lambda i, n: print(f"\r{i}/{n} questions", end="",
                                                            file=sys.stderr))
        print(file=sys.stderr)
    elif args.qrels and args.queries and args.corpus:
        pairs = pairs_from_qrels(args.qrels, args.queries, args.corpus, negatives=args.negatives)
    else:
        raise AppkitError("give --qrels with --queries and --corpus, or --synthetic N")
    write_pairs(pairs, args.out)
    print(f"wrote {len(pairs)} pairs to {args.out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from retrievers.train import (
        read_pairs,
        register_trained,
        train_encoder,
        train_reranker,
        tuned_dir,
    )

    pairs = read_pairs(args.pairs)
    if args.max_pairs:
        pairs = pairs[: args.max_pairs]
    prefix = args.name or os.path.splitext(os.path.basename(args.pairs))[0]
    trained: dict[str, str] = {}
    if args.what in ("both", "encoder"):
        name = f"{prefix}-encoder"
        print(f"fine-tuning the embedder on {len(pairs)} pairs (CPU; minutes)…", file=sys.stderr)
        facts = train_encoder(pairs, tuned_dir(name), base=args.base, epochs=args.epochs,
                              batch_size=args.batch_size, max_seq_length=args.max_length)
        register_trained(name, "embedding", tuned_dir(name), base=args.base, pairs_file=args.pairs,
                         facts=facts, description=f"{args.base} fine-tuned on {args.pairs}")
        trained["encoder"] = name
        print(f"registered embedding model '{name}' ({facts['seconds']:.0f}s). Use it with "
              f"embedding.model = \"{name}\", then: appkit ingest --reembed")
    if args.what in ("both", "reranker"):
        name = f"{prefix}-reranker"
        print(f"training a cross-encoder on {len(pairs)} pairs (CPU; minutes)…", file=sys.stderr)
        facts = train_reranker(pairs, tuned_dir(name), base=args.base,
                               epochs=args.reranker_epochs or args.epochs,
                               negatives=args.negatives, max_length=args.max_length,
                               learning_rate=args.reranker_lr)
        register_trained(name, "reranker", tuned_dir(name), base=args.base, pairs_file=args.pairs,
                         facts=facts, description=f"cross-encoder from {args.base} on {args.pairs}")
        trained["reranker"] = name
        print(f"registered reranker '{name}' ({facts['seconds']:.0f}s). Use it with "
              f"retrieval.retriever = \"rerank\" and retrievers.rerank_model = \"{name}\"")
    if args.use:
        _use(args, trained)
    if args.json:
        print(json.dumps(trained))
    return 0


def _use(args: argparse.Namespace, trained: dict[str, str]) -> None:
    from appkit.config import find_profile, save_profile

    profile = find_profile(args.profile)
    if "encoder" in trained:
        profile = dataclasses.replace(profile, embedding=dataclasses.replace(
            profile.embedding, model=trained["encoder"]))
    if "reranker" in trained:
        profile = dataclasses.replace(
            profile, retrieval=dataclasses.replace(profile.retrieval, retriever="rerank"),
            retrievers=dataclasses.replace(profile.retrievers, rerank_model=trained["reranker"]))
    save_profile(profile, profile.source)
    print(f"updated {profile.source}" + (" (re-embed with: appkit ingest --reembed)"
                                         if "encoder" in trained else ""))
