"""Factories for the ``appkit.retrievers`` entry points: a profile names a retriever, these build it.

====================  =========================================================================
name                  what it returns
====================  =========================================================================
``mmr``               dense retrieval diversified with MMR (``dense`` itself is the core's)
``bm25``              BM25 over the same collection
``hybrid``            dense + BM25 fused (``retrievers.fusion``, ``*_weight``, ``rrf_k``)
``rerank``            ``retrievers.first_stage`` candidates re-ordered by ``retrievers.reranker``
``multi-query``       ``first_stage`` with query expansion forced on
``context``           ``first_stage`` with neighbouring chunks (``context_window``, at least 1)
====================  =========================================================================

Switches in ``[retrievers]`` apply to every name above: ``query_expansion = true`` wraps the first
stage in multi-query expansion, ``context_window > 0`` widens the final hits, ``mmr = true``
diversifies the dense side. Order: first stage → query transformation → rerank → context.

Example:
    >>> from appkit.retrieval import retriever_names
    >>> {"bm25", "hybrid", "rerank"} <= set(retriever_names())
    True
"""

from __future__ import annotations

from langchain_core.retrievers import BaseRetriever

from appkit.errors import ConfigError
from appkit.retrieval import RetrieverContext

FIRST_STAGES = ("dense", "mmr", "bm25", "hybrid")


def _dense(ctx: RetrieverContext, k: int, mmr: bool | None = None) -> BaseRetriever:
    from retrievers.dense import DenseRetriever

    cfg = ctx.profile.retrievers
    return DenseRetriever(store=ctx.store, k=k, mmr=cfg.mmr if mmr is None else mmr,
                          fetch_k=max(cfg.candidates, k), mmr_lambda=cfg.mmr_lambda)


def _bm25(ctx: RetrieverContext, k: int) -> BaseRetriever:
    from retrievers.bm25 import BM25Retriever, index_for

    return BM25Retriever(store=ctx.store, index=index_for(ctx.store, ctx.profile.data_dir), k=k)


def _hybrid(ctx: RetrieverContext, k: int) -> BaseRetriever:
    from retrievers.hybrid import HybridRetriever

    cfg = ctx.profile.retrievers
    return HybridRetriever(dense=_dense(ctx, k), bm25=_bm25(ctx, k), k=k,
                           candidates=cfg.candidates, fusion=cfg.fusion,
                           dense_weight=cfg.dense_weight,
                           bm25_weight=cfg.bm25_weight, rrf_k=cfg.rrf_k)


def first_stage(ctx: RetrieverContext, name: str, k: int) -> BaseRetriever:
    """Build a first-stage retriever by name, returning ``k`` chunks."""
    if name == "dense":
        return _dense(ctx, k, mmr=ctx.profile.retrievers.mmr)
    if name == "mmr":
        return _dense(ctx, k, mmr=True)
    if name == "bm25":
        return _bm25(ctx, k)
    if name == "hybrid":
        return _hybrid(ctx, k)
    raise ConfigError(f"expected one of {', '.join(FIRST_STAGES)}, got {name!r}",
                      path=str(ctx.profile.source) if ctx.profile.source else None,
                      key="retrievers.first_stage")


def _chat(ctx: RetrieverContext):  # noqa: ANN202 - a lazy callable
    if ctx.chat_model is None:
        raise ConfigError("this retriever needs the chat model, and none was given",
                          key="retrieval.retriever")
    return ctx.chat_model


def build_pipeline(ctx: RetrieverContext, stage: str, *, rerank: bool = False,
                   expand: bool | None = None, window: int | None = None) -> BaseRetriever:
    """First stage → (query transformation) → (rerank) → (context expansion), per the profile.

    Args:
        ctx: profile, store and chat model.
        stage: a first-stage name (:data:`FIRST_STAGES`).
        rerank: re-order candidates with ``retrievers.reranker``.
        expand: force query expansion on or off (default: ``retrievers.query_expansion``).
        window: force the context window (default: ``retrievers.context_window``).
    """
    cfg = ctx.profile.retrievers
    k = ctx.profile.retrieval.k
    expand = cfg.query_expansion if expand is None else expand
    window = cfg.context_window if window is None else window
    depth = max(cfg.rerank_candidates, k) if rerank else k
    retriever = first_stage(ctx, stage, depth)
    if expand:
        from retrievers.query_transform import QueryTransformRetriever

        retriever = QueryTransformRetriever(base=retriever, llm=_chat(ctx), k=depth,
                                            n_queries=cfg.expansion_queries,
                                            condense=ctx.profile.retrieval.condense_history)
    if rerank:
        from retrievers.rerank import CrossEncoderReranker, LLMReranker, RerankRetriever

        if cfg.reranker == "llm":
            reranker = LLMReranker(_chat(ctx))
        else:
            reranker = CrossEncoderReranker(cfg.rerank_model)
        retriever = RerankRetriever(base=retriever, reranker=reranker,
                                    candidates=cfg.rerank_candidates, k=k,
                                    first_stage_weight=cfg.rerank_blend)
    if window > 0:
        from retrievers.context import ContextExpansionRetriever

        retriever = ContextExpansionRetriever(base=retriever, store=ctx.store, window=window)
    return retriever


def set_filter(retriever: BaseRetriever, where: dict | None) -> BaseRetriever:
    """Put a Chroma ``where`` filter on every retriever in a pipeline that takes one.

    Example:
        >>> from retrievers.registry import set_filter
        >>> set_filter(make_retriever(ctx, "hybrid"), {"file_type": "pdf"})  # doctest: +SKIP
    """
    seen: set[int] = set()
    stack: list = [retriever]
    while stack:
        r = stack.pop()
        if r is None or id(r) in seen:
            continue
        seen.add(id(r))
        if "where" in type(r).model_fields:
            r.where = where
        stack.extend(getattr(r, name, None) for name in ("base", "dense", "bm25"))
    return retriever


# --- the entry points ------------------------------------------------------------------------------


def mmr(ctx: RetrieverContext) -> BaseRetriever:
    return build_pipeline(ctx, "mmr")


def bm25(ctx: RetrieverContext) -> BaseRetriever:
    return build_pipeline(ctx, "bm25")


def hybrid(ctx: RetrieverContext) -> BaseRetriever:
    return build_pipeline(ctx, "hybrid")


def rerank(ctx: RetrieverContext) -> BaseRetriever:
    return build_pipeline(ctx, ctx.profile.retrievers.first_stage, rerank=True)


def multi_query(ctx: RetrieverContext) -> BaseRetriever:
    return build_pipeline(ctx, ctx.profile.retrievers.first_stage, expand=True)


def context(ctx: RetrieverContext) -> BaseRetriever:
    return build_pipeline(ctx, ctx.profile.retrievers.first_stage,
                          window=max(1, ctx.profile.retrievers.context_window))
