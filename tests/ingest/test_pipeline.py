"""Ingestion with the hashing embedder and a real embedded Chroma store in ``tmp_path``."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from appkit.config import DocumentsConfig, Profile, RetrievalConfig
from appkit.errors import AppkitError, EmbedderMismatchError
from appkit.ingest import pipeline
from appkit.ingest.pipeline import Ingestor, chunk_id
from appkit.store.chroma import ChromaStore
from appkit.testing import HashingEmbeddings
from tests.helpers import manifest_ids, store_ids


def consistent(ingestor: Ingestor) -> set[str]:
    """The store holds exactly the chunks the manifest owns; returns them."""
    owned = manifest_ids(ingestor.manifest)
    assert store_ids(ingestor.store) == owned
    assert ingestor.store.count() == len(owned)
    assert ingestor.manifest.orphans() == []
    return owned


def ids_of(ingestor: Ingestor, path: Path) -> set[str]:
    return set(ingestor.manifest.get(str(path)).chunk_ids)


@pytest.fixture
def ingestor(profile: Profile, embeddings: HashingEmbeddings) -> Ingestor:
    return Ingestor(profile, embeddings=embeddings, progress=False)


def test_first_run_adds_every_file(ingestor: Ingestor, docs_dir: Path,
                                   embeddings: HashingEmbeddings) -> None:
    report = ingestor.run([docs_dir])
    assert (report.added, report.updated, report.unchanged, report.deleted) == (3, 0, 0, 0)
    assert report.ok and report.skipped == []
    owned = consistent(ingestor)
    assert report.chunks_embedded == len(owned) == embeddings.calls > 3, "files span chunks"
    assert sorted(status for _, status in report.files) == ["added"] * 3
    assert set(report.timings) >= {"scan", "load_split", "embed", "write"}

    [chunk] = ingestor.store.get(where={"file_type": "md"}, limit=1)
    meta = chunk.metadata
    assert meta["source"] == str(docs_dir / "notes" / "beta.md")
    assert meta["heading"].startswith("Beta")
    assert {"content_hash", "chunk_index", "ingested_at", "start_index"} <= set(meta)


def test_second_run_embeds_nothing(ingestor: Ingestor, docs_dir: Path,
                                   embeddings: HashingEmbeddings) -> None:
    ingestor.run([docs_dir])
    before, calls = consistent(ingestor), embeddings.calls
    report = ingestor.run([docs_dir])
    assert (report.added, report.updated, report.unchanged) == (0, 0, 3)
    assert report.chunks_embedded == 0 and embeddings.calls == calls
    assert consistent(ingestor) == before


def test_a_fresh_process_also_embeds_nothing(profile: Profile, docs_dir: Path) -> None:
    Ingestor(profile, embeddings=HashingEmbeddings(), progress=False).run([docs_dir])
    again = HashingEmbeddings()
    report = Ingestor(profile, embeddings=again, progress=False).run([docs_dir])
    assert report.unchanged == 3 and again.calls == 0


def test_changing_one_file_replaces_only_its_chunks(ingestor: Ingestor, docs_dir: Path,
                                                    embeddings: HashingEmbeddings) -> None:
    ingestor.run([docs_dir])
    beta = docs_dir / "notes" / "beta.md"
    old_beta, others = ids_of(ingestor, beta), consistent(ingestor) - ids_of(ingestor, beta)
    calls = embeddings.calls

    beta.write_text("# Beta\n\nThe beta budget was cut to thirty thousand euros.\n")
    report = ingestor.run([docs_dir])

    assert (report.added, report.updated, report.unchanged) == (0, 1, 2)
    new_beta = ids_of(ingestor, beta)
    assert new_beta.isdisjoint(old_beta)
    assert ingestor.store.get(ids=sorted(old_beta)) == [], "old chunks are gone"
    assert report.chunks_embedded == len(new_beta) == embeddings.calls - calls
    assert report.chunks_deleted == len(old_beta)
    assert consistent(ingestor) == others | new_beta
    assert "thirty thousand" in ingestor.store.search("beta budget", k=1)[0].page_content


def test_same_size_same_mtime_change_is_found_with_rehash(ingestor: Ingestor,
                                                          docs_dir: Path) -> None:
    ingestor.run([docs_dir])
    gamma = docs_dir / "gamma.txt"
    st = gamma.stat()
    gamma.write_text(gamma.read_text().replace("Gamma", "Omega"))
    os.utime(gamma, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert ingestor.run([docs_dir]).updated == 0, "size and mtime match: not even hashed"
    report = ingestor.run([docs_dir], rehash=True)
    assert report.updated == 1
    consistent(ingestor)


def test_deleting_a_file_deletes_its_chunks(ingestor: Ingestor, docs_dir: Path) -> None:
    ingestor.run([docs_dir])
    alpha = docs_dir / "alpha.txt"
    gone = ids_of(ingestor, alpha)
    alpha.unlink()
    report = ingestor.run([docs_dir])
    assert (report.deleted, report.unchanged, report.chunks_deleted) == (1, 2, len(gone))
    assert (str(alpha), "deleted") in report.files
    assert ingestor.manifest.get(str(alpha)) is None
    assert consistent(ingestor).isdisjoint(gone)


def test_touching_without_changing_is_unchanged(ingestor: Ingestor, docs_dir: Path,
                                                embeddings: HashingEmbeddings) -> None:
    ingestor.run([docs_dir])
    before, calls = consistent(ingestor), embeddings.calls
    alpha = docs_dir / "alpha.txt"
    os.utime(alpha, ns=(alpha.stat().st_atime_ns, alpha.stat().st_mtime_ns + 10**9))

    report = ingestor.run([docs_dir])
    assert (report.unchanged, report.updated, report.chunks_embedded) == (3, 0, 0)
    assert embeddings.calls == calls and consistent(ingestor) == before
    assert ingestor.manifest.get(str(alpha)).mtime_ns == alpha.stat().st_mtime_ns, \
        "the new mtime is recorded so the next run does not hash it again"


def test_chunk_ids_are_stable(profile: Profile, docs_dir: Path, tmp_path: Path) -> None:
    first = Ingestor(profile, embeddings=HashingEmbeddings(), progress=False)
    first.run([docs_dir])
    other = dataclasses.replace(profile, store=dataclasses.replace(profile.store,
                                                                   path=str(tmp_path / "other")))
    second = Ingestor(other, embeddings=HashingEmbeddings(), progress=False)
    second.run([docs_dir])
    assert manifest_ids(first.manifest) == manifest_ids(second.manifest)
    assert chunk_id("/a", "ff" * 32, 3) == chunk_id("/a", "ff" * 32, 3) != chunk_id("/b", "ff" * 32, 3)


def test_changing_the_chunking_re_ingests_everything(profile: Profile, docs_dir: Path) -> None:
    Ingestor(profile, embeddings=HashingEmbeddings(), progress=False).run([docs_dir])
    wider = dataclasses.replace(profile, retrieval=RetrievalConfig(chunk_size=400, chunk_overlap=0))
    ingestor = Ingestor(wider, embeddings=HashingEmbeddings(), progress=False)
    report = ingestor.run([docs_dir])
    assert report.updated == 3
    consistent(ingestor)


def test_small_batches_give_the_same_result(ingestor: Ingestor, docs_dir: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "BATCH_CHUNKS", 2)
    flushes = []
    original = Ingestor._flush
    monkeypatch.setattr(Ingestor, "_flush",
                        lambda self, batch, *a: (flushes.append(len(batch)), original(self, batch, *a)))
    report = ingestor.run([docs_dir])
    assert report.added == 3 and sum(flushes) == 3 and len([f for f in flushes if f]) == 3
    consistent(ingestor)


def test_embedder_change_is_refused(profile: Profile, docs_dir: Path) -> None:
    Ingestor(profile, embeddings=HashingEmbeddings(), progress=False).run([docs_dir])
    other = Ingestor(profile, embeddings=HashingEmbeddings(identity="hashing-512"), progress=False)
    with pytest.raises(EmbedderMismatchError) as err:
        other.run([docs_dir])
    assert "appkit ingest --reembed" in str(err.value)
    assert "'hashing-256'" in str(err.value) and "'hashing-512'" in str(err.value)


def test_reembed_rebuilds_with_the_new_embedder(profile: Profile, docs_dir: Path) -> None:
    first = Ingestor(profile, embeddings=HashingEmbeddings(), progress=False)
    first.run([docs_dir])
    count = first.store.count()
    new = HashingEmbeddings(dim=64, identity="hashing-64")
    second = Ingestor(profile, embeddings=new, progress=False)
    second.reembed()
    report = second.run([docs_dir])
    assert report.added == 3 and new.calls == count
    assert second.manifest.meta("embedder") == "hashing-64"
    assert consistent(second) and second.store.count() == count


def test_unsupported_and_hidden_files_are_ignored_not_skipped(ingestor: Ingestor,
                                                              docs_dir: Path) -> None:
    (docs_dir / "photo.png").write_bytes(b"\x89PNG")
    (docs_dir / ".secret.txt").write_text("hidden")
    (docs_dir / ".git").mkdir()
    (docs_dir / ".git" / "HEAD.txt").write_text("ref")
    report = ingestor.run([docs_dir])
    assert report.ok and report.added == 3 and report.ignored == 3


def test_include_and_exclude_patterns(profile: Profile, docs_dir: Path) -> None:
    only_md = dataclasses.replace(profile, documents=DocumentsConfig(include=("**/*.md",)))
    ingestor = Ingestor(only_md, embeddings=HashingEmbeddings(), progress=False)
    report = ingestor.run([docs_dir])
    assert report.added == 1 and report.ignored == 2
    assert [r.source for r in ingestor.manifest.all()] == [str(docs_dir / "notes" / "beta.md")]

    no_notes = dataclasses.replace(profile, documents=DocumentsConfig(exclude=("notes/*",)))
    assert Ingestor(no_notes, embeddings=HashingEmbeddings(), progress=False).run(
        [docs_dir]).added == 2


def test_excluding_an_ingested_file_removes_it(profile: Profile, docs_dir: Path) -> None:
    Ingestor(profile, embeddings=HashingEmbeddings(), progress=False).run([docs_dir])
    narrower = dataclasses.replace(profile, documents=DocumentsConfig(exclude=("*.txt",)))
    ingestor = Ingestor(narrower, embeddings=HashingEmbeddings(), progress=False)
    report = ingestor.run([docs_dir])
    assert report.deleted == 2 and report.unchanged == 1
    consistent(ingestor)


def test_a_single_file_can_be_ingested(ingestor: Ingestor, docs_dir: Path) -> None:
    report = ingestor.run([docs_dir / "gamma.txt"])
    assert report.added == 1
    assert ingestor.run([docs_dir / "gamma.txt"]).unchanged == 1
    consistent(ingestor)


def test_a_missing_folder_is_an_error(ingestor: Ingestor, tmp_path: Path) -> None:
    with pytest.raises(AppkitError, match="no such file or folder"):
        ingestor.run([tmp_path / "nowhere"])


def test_a_bad_file_is_skipped_and_the_run_goes_on(ingestor: Ingestor, docs_dir: Path) -> None:
    (docs_dir / "broken.json").write_text("{oops")
    report = ingestor.run([docs_dir])
    assert not report.ok and report.added == 3
    [skipped] = report.skipped
    assert skipped.path == str(docs_dir / "broken.json") and "invalid JSON" in skipped.reason
    assert report.to_dict()["skipped"] == [{"path": skipped.path, "reason": skipped.reason}]


def test_a_loader_crash_is_a_skip_not_a_failed_run(ingestor: Ingestor, docs_dir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from appkit.ingest.loaders import TextLoader

    def explode(self, path):
        if path.name == "gamma.txt":
            raise ValueError("parser bug")
        return original(self, path)

    original = TextLoader.load
    monkeypatch.setattr(TextLoader, "load", explode)
    report = ingestor.run([docs_dir])
    assert report.added == 2
    assert [(s.path, s.reason) for s in report.skipped] == [
        (str(docs_dir / "gamma.txt"), "ValueError: parser bug")]


def test_a_file_that_turns_bad_keeps_its_old_chunks(ingestor: Ingestor, docs_dir: Path) -> None:
    ingestor.run([docs_dir])
    gamma = docs_dir / "gamma.txt"
    kept = ids_of(ingestor, gamma)
    gamma.write_bytes(b"\x00\x01binary now")
    report = ingestor.run([docs_dir])
    assert [s.path for s in report.skipped] == [str(gamma)]
    assert kept <= consistent(ingestor), "a failed update never loses the stored chunks"


def test_on_file_reports_each_decision(ingestor: Ingestor, docs_dir: Path) -> None:
    seen: list[tuple[str, str]] = []
    ingestor.run([docs_dir], on_file=lambda path, status: seen.append((Path(path).name, status)))
    assert sorted(seen) == [("alpha.txt", "added"), ("beta.md", "added"), ("gamma.txt", "added")]


# --- interrupted runs -----------------------------------------------------------------------


class Crash(Exception):
    pass


def crash_after_write(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store write succeeds, then the process 'dies' before the manifest commit."""
    original = ChromaStore.upsert

    def upsert(self, *args, **kwargs):
        original(self, *args, **kwargs)
        raise Crash

    monkeypatch.setattr(ChromaStore, "upsert", upsert)


def test_an_interrupted_first_run_leaves_no_duplicates(profile: Profile, docs_dir: Path) -> None:
    with pytest.MonkeyPatch.context() as mp:
        crash_after_write(mp)
        with pytest.raises(Crash):
            Ingestor(profile, embeddings=HashingEmbeddings(), progress=False).run([docs_dir])
    crashed = Ingestor(profile, embeddings=HashingEmbeddings(), progress=False)
    assert crashed.store.count() > 0 and crashed.manifest.count() == 0
    assert len(crashed.manifest.orphans()) == crashed.store.count()

    report = crashed.run([docs_dir])
    assert report.added == 3
    owned = consistent(crashed)
    assert report.chunks_embedded == len(owned)


def test_an_interrupted_update_keeps_the_committed_version(profile: Profile,
                                                            docs_dir: Path) -> None:
    Ingestor(profile, embeddings=HashingEmbeddings(), progress=False).run([docs_dir])
    beta = docs_dir / "notes" / "beta.md"
    beta.write_text("# Beta\n\nRewritten: the budget moved to Q4.\n")
    with pytest.MonkeyPatch.context() as mp:
        crash_after_write(mp)
        with pytest.raises(Crash):
            Ingestor(profile, embeddings=HashingEmbeddings(), progress=False).run([docs_dir])

    ingestor = Ingestor(profile, embeddings=HashingEmbeddings(), progress=False)
    old_beta = ids_of(ingestor, beta)
    assert old_beta <= store_ids(ingestor.store), "the committed chunks survived the crash"
    report = ingestor.run([docs_dir])
    assert (report.updated, report.unchanged) == (1, 2)
    owned = consistent(ingestor)
    assert owned.isdisjoint(old_beta)
    texts = [d.page_content for d in ingestor.store.get(where={"source": str(beta)})]
    assert texts == ["# Beta\n\nRewritten: the budget moved to Q4."]


def test_a_crash_before_the_store_write_changes_nothing(profile: Profile, docs_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    failing = HashingEmbeddings()
    monkeypatch.setattr(failing, "embed_documents", lambda texts: (_ for _ in ()).throw(Crash()))
    with pytest.raises(Crash):
        Ingestor(profile, embeddings=failing, progress=False).run([docs_dir])
    ingestor = Ingestor(profile, embeddings=HashingEmbeddings(), progress=False)
    assert ingestor.run([docs_dir]).added == 3
    consistent(ingestor)


# --- write-behind (the Ray driver's writer): one batch stored while the next one arrives ------


def test_write_behind_overlaps_and_keeps_order(profile: Profile, docs_dir: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time

    from appkit.ingest.pipeline import IngestReport, WriteBehind

    ingestor = Ingestor(profile, embeddings=HashingEmbeddings(), progress=False)
    files = sorted(p for p in docs_dir.rglob("*") if p.is_file() and p.suffix in {".txt", ".md"})
    prepared = [ingestor.prepare((f, str(docs_dir), f.stat())) for f in files]
    spans: list[tuple[float, float]] = []
    upsert = ChromaStore.upsert

    def slow_upsert(self, *args, **kwargs):
        t0 = time.perf_counter()
        time.sleep(0.2)
        upsert(self, *args, **kwargs)
        spans.append((t0, time.perf_counter()))

    monkeypatch.setattr(ChromaStore, "upsert", slow_upsert)
    report, threads, submitted = IngestReport(), set(), []
    with WriteBehind(ingestor, report, lambda *_: threads.add(threading.get_ident())) as writer:
        for p in prepared:
            vectors = ingestor.embeddings.embed_documents([c.page_content for c in p.chunks])
            submitted.append(time.perf_counter())
            writer.submit([p], vectors)
    assert report.added == len(files) == 3 and len(spans) == 3
    assert submitted[1] < spans[0][1], "the second batch waited for the first write"
    assert threads == {threading.get_ident()}, "counting and notes run in the caller's thread"
    assert report.timings["write"] >= 0.6
    consistent(ingestor)


def test_write_behind_raises_a_failed_write_and_keeps_earlier_batches(
        profile: Profile, docs_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from appkit.ingest.pipeline import IngestReport, WriteBehind

    ingestor = Ingestor(profile, embeddings=HashingEmbeddings(), progress=False)
    files = sorted(p for p in docs_dir.rglob("*") if p.is_file() and p.suffix in {".txt", ".md"})
    prepared = [ingestor.prepare((f, str(docs_dir), f.stat())) for f in files]
    upsert, calls = ChromaStore.upsert, []

    def failing_second(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise Crash
        upsert(self, *args, **kwargs)

    monkeypatch.setattr(ChromaStore, "upsert", failing_second)
    with pytest.raises(Crash), WriteBehind(ingestor, IngestReport(), lambda *_: None) as writer:
        for p in prepared:
            writer.submit([p], ingestor.embeddings.embed_documents(
                [c.page_content for c in p.chunks]))
    monkeypatch.setattr(ChromaStore, "upsert", upsert)
    fresh = Ingestor(profile, embeddings=HashingEmbeddings(), progress=False)
    assert fresh.manifest.count() == 1, "the batch stored before the failure stays committed"
    report = fresh.run([docs_dir])
    assert (report.added, report.unchanged) == (2, 1)
    consistent(fresh)
