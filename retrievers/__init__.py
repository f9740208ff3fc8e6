"""appkit layer: retrievers (imports only from ``appkit``; the core never imports this package).

One module per retriever, each a LangChain ``BaseRetriever``, registered by name through the
``appkit.retrievers`` entry-point group (see :mod:`retrievers.registry`), so a profile selects one
with ``retrieval.retriever = "hybrid"`` and tunes it in its ``[retrievers]`` table:

* :mod:`retrievers.dense` — ``DenseRetriever``: Chroma cosine search, metadata filters, MMR.
* :mod:`retrievers.bm25` — ``BM25Retriever`` over a bm25s index kept in step with ingestion.
* :mod:`retrievers.hybrid` — ``HybridRetriever``: dense + BM25, weighted reciprocal rank fusion.
* :mod:`retrievers.rerank` — ``RerankRetriever`` with a cross-encoder or the chat model.
* :mod:`retrievers.query_transform` — multi-query expansion and follow-up condensation.
* :mod:`retrievers.context` — neighbouring chunks stitched around each hit.
* :mod:`retrievers.train` — fine-tune the embedder, train a cross-encoder (``appkit retrievers
  train``); :mod:`retrievers.cli` adds ``appkit search`` and ``appkit retrievers``.

The contract all of them keep (scores, empty and long queries, filters) is in :mod:`retrievers.base`.
Importing this package loads no model and no bm25s; they load on first use.

Example:
    >>> from appkit.app import App
    >>> app = App.from_profile_file("appkit.toml")  # doctest: +SKIP
    >>> from appkit.retrieval import RetrieverContext, make_retriever
    >>> r = make_retriever(RetrieverContext(app.profile, app.store), "hybrid")  # doctest: +SKIP
    >>> [d.metadata["score"] for d in r.invoke("termination clause")]  # doctest: +SKIP
"""
