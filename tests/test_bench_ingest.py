"""``appkit bench ingest``: stage timings, ceiling and overhead, with the hashing embedder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from appkit.bench_ingest import STAGES, render_ingest_bench, run_ingest_bench
from appkit.config import Profile
from appkit.testing import HashingEmbeddings


class SlowEmbeddings(HashingEmbeddings):
    """Embedding dominates, as it does with a real model."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        import time

        time.sleep(0.01 * len(texts))
        return super().embed_documents(texts)


def test_every_stage_is_timed_and_embedding_bounds(profile: Profile, corpus: Path) -> None:
    (corpus / "empty.txt").write_text("")
    report = run_ingest_bench(str(corpus), profile=profile, embeddings=SlowEmbeddings())
    assert list(report["stages"]) == list(STAGES)
    assert report["files"] >= 5 and report["skipped"] == 1
    assert report["chunks"] > report["files"] and report["tokens"] > report["chunks"]
    assert all(s["seconds"] > 0 for s in report["stages"].values()), report["stages"]
    assert sum(s["share"] for s in report["stages"].values()) == pytest.approx(1, abs=0.01)
    assert report["bound_by"] == "embed"
    ceiling, pipeline = report["embedding_ceiling"], report["pipeline"]
    assert 0 < ceiling["seconds"] <= pipeline["seconds"]
    assert report["pipeline_overhead"] == pytest.approx(1 - ceiling["seconds"] / pipeline["seconds"],
                                                        abs=1e-3)
    assert pipeline["chunks_per_s"] <= ceiling["chunks_per_s"]
    # The profile's own store is not touched.
    assert not Path(profile.store.path).exists()

    table = render_ingest_bench(report)
    assert "embed" in table and "<- bounds ingestion" in table and "pipeline overhead" in table


def test_cli_prints_the_table_and_json(monkeypatch, write_profile, corpus: Path, capsys) -> None:
    import appkit.models
    from appkit.cli import main

    monkeypatch.setattr(appkit.models, "make_embeddings", lambda profile: HashingEmbeddings())
    path = write_profile({"store": {"path": "store"}})
    assert main(["bench", "ingest", str(corpus), "--profile", str(path)]) == 0
    out = capsys.readouterr().out
    assert all(stage in out for stage in STAGES) and "chunks/s" in out
    assert main(["bench", "ingest", str(corpus), "--profile", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["embedding_model"] == "hashing-256" and set(data["stages"]) == set(STAGES)
    assert main(["bench", "ingest", str(corpus / "nope"), "--profile", str(path)]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert main(["bench", "a", "b", "c", "--profile", str(path)]) == 2


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "onnx-int8"])
def test_real_tokenizers_count_model_tokens(backend: str, profile: Profile, corpus: Path) -> None:
    import dataclasses

    from appkit.models import make_embeddings

    p = dataclasses.replace(profile, embedding=dataclasses.replace(profile.embedding, backend=backend))
    embeddings = make_embeddings(p)
    assert embeddings.tokenize(["hello world", "a"]) == 4 + 3  # [CLS] ... [SEP] around each
    report = run_ingest_bench(str(corpus), profile=p, embeddings=embeddings)
    assert report["tokens"] > report["chunks"] > 0 and report["stages"]["embed"]["seconds"] > 0
