"""The profile's ``[retrievers]`` table: defaults, TOML round trip, errors that name file and key."""

from __future__ import annotations

import pytest

from appkit.config import Profile, RetrieversConfig, load_profile, save_profile
from appkit.errors import ConfigError
from appkit.retrieval import RetrieverContext, make_retriever


def test_round_trips_through_toml(tmp_path):
    p = Profile(retrievers=RetrieversConfig(dense_weight=0.25, fusion="rrf", mmr=True, rerank_model="mine",
                                            reranker="llm", context_window=2))
    path = save_profile(p, tmp_path / "appkit.toml")
    assert "[retrievers]" in path.read_text()
    assert load_profile(path) == p


@pytest.mark.parametrize("table,key", [
    ({"fusion": 1}, "retrievers.fusion"),
    ({"fusion": "max"}, "retrievers.fusion"),
    ({"candidates": 0}, "retrievers.candidates"),
    ({"dense_weight": -1}, "retrievers.dense_weight"),
    ({"mmr_lambda": 1.5}, "retrievers.mmr_lambda"),
    ({"reranker": "oracle"}, "retrievers.reranker"),
    ({"query_expansion": "yes"}, "retrievers.query_expansion"),
    ({"context_window": -1}, "retrievers.context_window"),
])
def test_bad_values_name_file_and_key(tmp_path, table, key):
    path = tmp_path / "appkit.toml"
    lines = "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in table.items())
    path.write_text(f"[retrievers]\n{lines}\n".replace("True", "true"))
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    assert str(path) in str(err.value) and key in str(err.value)


def test_unknown_first_stage_names_the_key(corpus):
    ctx = corpus.context(first_stage="splade")
    with pytest.raises(ConfigError, match="retrievers.first_stage"):
        make_retriever(ctx, "rerank")


def test_chat_model_needed_but_missing(corpus):
    ctx = RetrieverContext(corpus.profile, corpus.store, None)
    with pytest.raises(ConfigError, match="chat model"):
        make_retriever(ctx, "multi-query")
