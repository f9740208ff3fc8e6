"""``appkit ingest --engine ray`` on a local Ray (``num_cpus=2``) against a real ``chroma run``.

Each test compares the Ray engine with the single-process engine on the same files: same ids, same
count, same documents and vectors, the same skipped files with the same reasons.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from appkit.config import Profile, StoreConfig
from appkit.ingest.pipeline import IngestReport, Ingestor
from appkit.ingest.ray_engine import RayIngestor
from appkit.testing import HashingEmbeddings
from tests.helpers import REPO, manifest_ids, store_ids

pytestmark = [pytest.mark.integration, pytest.mark.enable_socket]


class DyingEmbeddings(HashingEmbeddings):
    """Kills its process on the ``die_at``-th batch embedded by any actor (once in all), so the
    job has already produced output when the actor dies."""

    def __init__(self, counter: str, die_at: int = 3):
        super().__init__()
        self.counter = counter
        self.die_at = die_at

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        fd = os.open(self.counter, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:  # an O_APPEND write is atomic and leaves the offset after it: this call's number
            os.write(fd, b"x")
            number = os.lseek(fd, 0, os.SEEK_CUR)
        finally:
            os.close(fd)
        if number == self.die_at:
            Path(self.counter + ".died").write_text(str(os.getpid()))
            os._exit(1)
        return super().embed_documents(texts)


@pytest.fixture(scope="module")
def ray_local() -> Iterator[object]:
    ray = pytest.importorskip("ray", reason="pip install 'appkit[ray]'")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Workers import this module (DyingEmbeddings) from the repository.
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0"}})
    yield ray
    ray.shutdown()


def on_server(profile: Profile, chroma: tuple[str, int], name: str) -> Profile:
    """``profile`` with its own data folder and collection on the Chroma server."""
    store = StoreConfig(path=str(Path(profile.store.path) / name), host=chroma[0], port=chroma[1],
                        collection=f"{name}{uuid.uuid4().hex[:8]}")
    return dataclasses.replace(profile, store=store)


def single(profile: Profile, chroma, folder: Path) -> tuple[Ingestor, IngestReport]:
    ingestor = Ingestor(on_server(profile, chroma, "single"), embeddings=HashingEmbeddings(),
                        progress=False)
    return ingestor, ingestor.run([folder])


def contents(ingestor: Ingestor) -> dict[str, tuple]:
    """id -> (document, metadata without the ingestion time, rounded vector); checks that the
    store holds exactly what the manifest owns, with nothing journalled."""
    assert store_ids(ingestor.store) == manifest_ids(ingestor.manifest)
    assert ingestor.manifest.orphans() == []
    res = ingestor.store.collection.get(include=["documents", "metadatas", "embeddings"])
    assert len(res["ids"]) == len(set(res["ids"])) == ingestor.store.count()
    return {i: (d, {k: v for k, v in m.items() if k != "ingested_at"},
                tuple(round(float(x), 5) for x in e))
            for i, d, m, e in zip(res["ids"], res["documents"], res["metadatas"], res["embeddings"])}


@pytest.mark.slow  # about 20 s on 2 busy cores
def test_ray_on_two_workers_builds_the_same_collection(ray_local, chroma, profile: Profile,
                                                       corpus: Path) -> None:
    reference, expected = single(profile, chroma, corpus)
    ray_ingestor = RayIngestor(on_server(profile, chroma, "ray"), embeddings_factory=HashingEmbeddings,
                               workers=2, batch_size=16, progress=False)
    report = ray_ingestor.run([corpus])
    assert report.ok, report.skipped
    assert (report.added, report.chunks_embedded) == (expected.added, expected.chunks_embedded) > (0, 0)
    assert contents(ray_ingestor) == contents(reference)
    assert ray_ingestor.manifest.meta("embedder") == "hashing-256"
    assert report.timings["embed"] > 0 and report.timings["load_split"] > 0


@pytest.mark.slow  # about 20 s on 2 busy cores
def test_incremental_rerun_updates_changed_and_removes_deleted_files(
        ray_local, chroma, profile: Profile, corpus: Path) -> None:
    ray_ingestor = RayIngestor(on_server(profile, chroma, "ray"), embeddings_factory=HashingEmbeddings,
                               workers=2, progress=False)
    first = ray_ingestor.run([corpus])
    changed, deleted = corpus / "support-faq.txt", corpus / "onboarding.html"
    changed.write_text(changed.read_text(encoding="utf-8") + "\n\nNew: the help desk opens at 8.",
                       encoding="utf-8")
    deleted.unlink()
    again = ray_ingestor.run([corpus])
    assert (again.added, again.updated, again.deleted) == (0, 1, 1)
    assert again.unchanged == first.added - 2
    reference, _ = single(profile, chroma, corpus)
    assert contents(ray_ingestor) == contents(reference)
    idle = ray_ingestor.run([corpus])
    assert (idle.chunks_embedded, idle.unchanged) == (0, first.added - 1)


def test_bad_files_are_skipped_with_the_single_engines_reasons(
        ray_local, chroma, profile: Profile, corpus: Path) -> None:
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4 not really a pdf")
    (corpus / "empty.txt").write_text("")
    (corpus / "binary.md").write_bytes(bytes(range(256)) * 8)
    reference, expected = single(profile, chroma, corpus)
    report = RayIngestor(on_server(profile, chroma, "ray"), embeddings_factory=HashingEmbeddings,
                         workers=2, progress=False).run([corpus])
    assert not report.ok and len(report.skipped) == 3
    assert sorted((s.path, s.reason) for s in report.skipped) == sorted(
        (s.path, s.reason) for s in expected.skipped)
    assert report.added == expected.added


def test_a_worker_killed_mid_job_leaves_no_duplicates_and_no_gaps(
        ray_local, chroma, profile: Profile, corpus: Path, tmp_path: Path) -> None:
    reference, expected = single(profile, chroma, corpus)
    counter = tmp_path / "batches"
    ray_ingestor = RayIngestor(on_server(profile, chroma, "ray"),
                               embeddings_factory=functools.partial(DyingEmbeddings, str(counter)),
                               workers=2, batch_size=8, progress=False)
    report = ray_ingestor.run([corpus])
    assert Path(str(counter) + ".died").exists(), "no actor died: the test proved nothing"
    assert report.ok and report.chunks_embedded == expected.chunks_embedded
    assert contents(ray_ingestor) == contents(reference)


@pytest.mark.slow
def test_real_minilm_gives_the_same_collection_on_ray(ray_local, chroma, profile: Profile,
                                                      corpus: Path, real_embeddings) -> None:
    import numpy as np

    reference = Ingestor(on_server(profile, chroma, "single"), embeddings=real_embeddings,
                         progress=False)
    reference.run([corpus])
    ray_ingestor = RayIngestor(on_server(profile, chroma, "ray"), workers=2, progress=False)
    report = ray_ingestor.run([corpus])
    assert report.ok and ray_ingestor.embedder_id == reference.embedder_id
    want = reference.store.collection.get(include=["documents", "embeddings"])
    got = ray_ingestor.store.collection.get(ids=want["ids"], include=["documents", "embeddings"])
    assert sorted(got["ids"]) == sorted(want["ids"]) and ray_ingestor.store.count() == len(want["ids"])
    by_id = dict(zip(got["ids"], zip(got["documents"], got["embeddings"])))
    for i, doc, vec in zip(want["ids"], want["documents"], want["embeddings"]):
        assert by_id[i][0] == doc
        assert float(np.dot(by_id[i][1], vec)) > 0.999


def test_cli_checks_the_ray_options(write_profile, capsys) -> None:
    from appkit.cli import main

    path = write_profile({})
    assert main(["ingest", "--profile", str(path), "--ray-address", "auto", "."]) == 2
    assert "--ray-address needs --engine ray" in capsys.readouterr().err
    assert main(["ingest", "--profile", str(path), "--engine", "ray", "--workers", "0", "."]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
