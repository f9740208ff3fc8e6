from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from appkit.ingest.manifest import FileRecord, Manifest


def record(source: str, ids: tuple[str, ...], root: str = "/docs", sha: str = "s1") -> FileRecord:
    return FileRecord(source, root, sha, 10, 1, "text-1/split", "hashing-256", ids, "2024-06-12")


@pytest.fixture
def manifest(tmp_path: Path) -> Manifest:
    m = Manifest(tmp_path / "state" / "manifest.sqlite")
    yield m
    m.close()


def test_put_get_and_list(manifest: Manifest) -> None:
    a, b = record("/docs/a.txt", ("a1", "a2")), record("/other/b.txt", ("b1",), root="/other")
    manifest.put(a)
    manifest.put(b)
    assert manifest.get("/docs/a.txt") == a
    assert manifest.get("/docs/missing.txt") is None
    assert [r.source for r in manifest.all()] == ["/docs/a.txt", "/other/b.txt"]
    assert list(manifest.all("/other")) == [b]
    assert manifest.count() == 2


def test_commit_replaces_and_removes_in_one_go(manifest: Manifest) -> None:
    manifest.put(record("/docs/a.txt", ("a1",)))
    manifest.put(record("/docs/b.txt", ("b1",)))
    manifest.commit([record("/docs/a.txt", ("a9",), sha="s2")], ["/docs/b.txt"])
    assert [(r.source, r.chunk_ids) for r in manifest.all()] == [("/docs/a.txt", ("a9",))]


def test_a_failed_commit_changes_nothing(manifest: Manifest) -> None:
    manifest.put(record("/docs/a.txt", ("a1",)))
    broken = dataclasses.replace(record("/docs/b.txt", ("b1",)), size=object())  # not storable
    with pytest.raises(Exception):
        manifest.commit([record("/docs/a.txt", ("a2",)), broken], [])
    assert manifest.get("/docs/a.txt").chunk_ids == ("a1",)
    assert manifest.get("/docs/b.txt") is None


def test_touch_updates_only_the_mtime(manifest: Manifest) -> None:
    manifest.put(record("/docs/a.txt", ("a1",)))
    manifest.touch("/docs/a.txt", 99)
    assert manifest.get("/docs/a.txt") == dataclasses.replace(record("/docs/a.txt", ("a1",)),
                                                              mtime_ns=99)


def test_journal_of_a_new_file_is_orphaned_until_committed(manifest: Manifest) -> None:
    manifest.begin({"/docs/a.txt": ["a1", "a2"]})
    assert sorted(manifest.orphans()) == ["a1", "a2"]
    manifest.commit([record("/docs/a.txt", ("a1", "a2"))], [])
    assert manifest.orphans() == []


def test_journal_keeps_ids_a_committed_row_still_owns(manifest: Manifest) -> None:
    manifest.put(record("/docs/a.txt", ("a1", "a2")))
    manifest.begin({"/docs/a.txt": ["a2", "a3"]})  # an update that did not finish
    assert manifest.orphans() == ["a3"]
    manifest.clear_pending()
    assert manifest.orphans() == []


def test_journal_survives_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "manifest.sqlite"
    first = Manifest(path)
    first.begin({"/docs/a.txt": ["a1"]})
    first.close()  # the process dies before commit
    second = Manifest(path)
    assert second.orphans() == ["a1"]
    second.close()


def test_meta_and_reset(manifest: Manifest) -> None:
    assert manifest.meta("embedder") is None
    manifest.set_meta("embedder", "all-minilm-l6-v2")
    manifest.set_meta("embedder", "hashing-256")
    assert manifest.meta("embedder") == "hashing-256"
    manifest.put(record("/docs/a.txt", ("a1",)))
    manifest.begin({"/docs/b.txt": ["b1"]})
    manifest.reset()
    assert manifest.count() == 0 and manifest.orphans() == [] and manifest.meta("embedder") is None
