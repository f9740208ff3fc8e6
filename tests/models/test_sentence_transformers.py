from __future__ import annotations

import math

import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from appkit.config import EmbeddingConfig, Profile
from appkit.models import make_embeddings
from appkit.models.sentence_transformers import SentenceTransformerEmbeddings


@pytest.fixture(scope="module")
def torch_embeddings() -> SentenceTransformerEmbeddings:
    """The packaged MiniLM on the torch backend (the session's real_embeddings is the default, int8)."""
    emb = make_embeddings(Profile(embedding=EmbeddingConfig(backend="torch")))
    emb.warm_up()
    return emb


def test_construction_loads_nothing() -> None:
    emb = SentenceTransformerEmbeddings("/models/all-MiniLM-L6-v2/", batch_size=8)
    assert emb.identity == "all-MiniLM-L6-v2" and emb._inner is None
    assert emb.embed_documents([]) == [], "nothing to embed loads nothing"
    assert emb._inner is None


def test_make_embeddings_takes_the_profile_settings() -> None:
    profile = Profile(embedding=EmbeddingConfig(batch_size=16, max_seq_length=128, backend="torch"))
    emb = make_embeddings(profile)
    assert isinstance(emb, SentenceTransformerEmbeddings)
    assert (emb.identity, emb.batch_size, emb.max_seq_length) == ("all-minilm-l6-v2", 16, 128)
    assert emb._inner is None


def test_a_local_folder_is_identified_by_its_path(tmp_path) -> None:
    torch_profile = Profile(embedding=EmbeddingConfig(backend="torch"))
    assert make_embeddings(torch_profile, model=str(tmp_path)).identity == str(tmp_path)
    int8_profile = Profile(embedding=EmbeddingConfig(backend="onnx-int8"))
    assert make_embeddings(int8_profile, model=str(tmp_path)).identity == f"{tmp_path}@onnx-int8"


@pytest.mark.slow
def test_real_embeddings(torch_embeddings: SentenceTransformerEmbeddings) -> None:
    real_embeddings = torch_embeddings
    assert real_embeddings.dimension == 384
    query = real_embeddings.embed_query("How much may a hotel night cost?")
    near, far = real_embeddings.embed_documents([
        "Hotels are reimbursed up to EUR 135 per night.",
        "Kestrel-2 ships to customers on 14 November.",
    ])
    assert len(query) == len(near) == 384
    assert math.isclose(sum(v * v for v in near), 1.0, rel_tol=1e-4), "normalised"
    dot = lambda a, b: sum(x * y for x, y in zip(a, b))  # noqa: E731
    assert dot(query, near) > dot(query, far) + 0.2


@pytest.mark.slow
def test_long_texts_are_truncated_not_refused(torch_embeddings: SentenceTransformerEmbeddings) -> None:
    real_embeddings = torch_embeddings
    [vector] = real_embeddings.embed_documents(["word " * 5000])
    assert len(vector) == 384


def _minilm_params() -> dict:
    from appkit.models.catalogue import resolve_model

    return {"model_path": str(resolve_model("all-minilm-l6-v2")[1]), "name": "all-minilm-l6-v2"}


class TestSentenceTransformerEmbeddingsUnit(EmbeddingsUnitTests):
    @property
    def embeddings_class(self) -> type[SentenceTransformerEmbeddings]:
        return SentenceTransformerEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return {"model_path": "/models/all-MiniLM-L6-v2", "name": "all-minilm-l6-v2"}


@pytest.mark.slow
class TestSentenceTransformerEmbeddingsIntegration(EmbeddingsIntegrationTests):
    """The standard suite against the packaged MiniLM (each test loads a fresh instance)."""

    @property
    def embeddings_class(self) -> type[SentenceTransformerEmbeddings]:
        return SentenceTransformerEmbeddings

    @property
    def embedding_model_params(self) -> dict:
        return _minilm_params()
