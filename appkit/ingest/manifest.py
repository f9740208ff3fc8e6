"""The ingestion manifest: one SQLite row per ingested file, and a journal of writes in flight.

The manifest records, for each file, its content hash, size and mtime, the pipeline version that cut
it, the embedder that embedded it and the ids of its chunks. Ingestion compares files against it to
decide what is new, changed, unchanged or deleted.

Crash safety: before chunks are written to the store their ids go into the ``pending`` journal; the
file's row changes only after the store write succeeded, in the same transaction that clears the
journal. A run that dies in between leaves journal rows, and the next run deletes those chunks from
the store unless a committed row owns them. So the store never keeps duplicates or loses the chunks
of a file that was not re-ingested successfully.

Example:
    >>> import tempfile, pathlib
    >>> from appkit.ingest.manifest import Manifest, FileRecord
    >>> m = Manifest(pathlib.Path(tempfile.mkdtemp()) / "manifest.sqlite")
    >>> m.put(FileRecord("/d/a.txt", "/d", "ab", 3, 1, "p1", "e1", ("id1",), "now"))
    >>> m.get("/d/a.txt").chunk_ids
    ('id1',)
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    source TEXT PRIMARY KEY,
    root TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    pipeline TEXT NOT NULL,
    embedder TEXT NOT NULL,
    chunk_ids TEXT NOT NULL,
    ingested_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS files_root ON files(root);
CREATE TABLE IF NOT EXISTS pending (id TEXT PRIMARY KEY, source TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class FileRecord:
    """What the manifest knows about one ingested file."""

    source: str
    root: str
    sha256: str
    size: int
    mtime_ns: int
    pipeline: str
    embedder: str
    chunk_ids: tuple[str, ...]
    ingested_at: str


class Manifest:
    """SQLite-backed manifest of ingested files (safe to share between threads of one process)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()

    def close(self) -> None:
        self._db.close()

    # --- files -----------------------------------------------------------------------------

    def get(self, source: str) -> FileRecord | None:
        with self._lock:
            row = self._db.execute("SELECT * FROM files WHERE source = ?", (source,)).fetchone()
        return _record(row) if row else None

    def all(self, root: str | None = None) -> Iterator[FileRecord]:
        with self._lock:
            if root is None:
                rows = self._db.execute("SELECT * FROM files ORDER BY source").fetchall()
            else:
                rows = self._db.execute(
                    "SELECT * FROM files WHERE root = ? ORDER BY source", (root,)
                ).fetchall()
        return (_record(r) for r in rows)

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM files").fetchone()[0]

    def put(self, record: FileRecord) -> None:
        self.commit([record], [])

    def touch(self, source: str, mtime_ns: int) -> None:
        """Record a new mtime for a file whose content did not change."""
        with self._lock:
            self._db.execute("UPDATE files SET mtime_ns = ? WHERE source = ?", (mtime_ns, source))

    def commit(self, records: Iterable[FileRecord], removed: Iterable[str]) -> None:
        """Write rows and drop others in one transaction, clearing their journal entries."""
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                for r in records:
                    cur.execute(
                        "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?)",
                        (r.source, r.root, r.sha256, r.size, r.mtime_ns, r.pipeline, r.embedder,
                         json.dumps(list(r.chunk_ids)), r.ingested_at),
                    )
                    cur.execute("DELETE FROM pending WHERE source = ?", (r.source,))
                for source in removed:
                    cur.execute("DELETE FROM files WHERE source = ?", (source,))
                    cur.execute("DELETE FROM pending WHERE source = ?", (source,))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    # --- journal ---------------------------------------------------------------------------

    def begin(self, ids_by_source: dict[str, list[str]]) -> None:
        """Journal chunk ids about to be written to the store."""
        with self._lock:
            cur = self._db.cursor()
            cur.execute("BEGIN IMMEDIATE")
            cur.executemany(
                "INSERT OR REPLACE INTO pending VALUES (?, ?)",
                [(i, s) for s, ids in ids_by_source.items() for i in ids],
            )
            cur.execute("COMMIT")

    def orphans(self) -> list[str]:
        """Journalled ids that no committed file owns: written by a run that did not finish."""
        with self._lock:
            pending = self._db.execute("SELECT id, source FROM pending").fetchall()
            if not pending:
                return []
            owned: set[str] = set()
            for (source,) in {(s,) for _, s in pending}:
                rec = self.get(source)
                if rec:
                    owned.update(rec.chunk_ids)
        return [i for i, _ in pending if i not in owned]

    def clear_pending(self) -> None:
        with self._lock:
            self._db.execute("DELETE FROM pending")

    # --- meta ------------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    @property
    def generation(self) -> int:
        """A counter that grows whenever the stored chunks change (derived indexes compare it)."""
        return int(self.meta("generation") or 0)

    def bump_generation(self) -> int:
        with self._lock:
            value = self.generation + 1
            self.set_meta("generation", str(value))
            return value

    def reset(self) -> None:
        """Forget every file (used when the collection is rebuilt with another embedder)."""
        with self._lock:
            self._db.executescript("DELETE FROM files; DELETE FROM pending; DELETE FROM meta;")


def _record(row: tuple) -> FileRecord:
    return FileRecord(
        source=row[0], root=row[1], sha256=row[2], size=row[3], mtime_ns=row[4],
        pipeline=row[5], embedder=row[6], chunk_ids=tuple(json.loads(row[7])), ingested_at=row[8],
    )
