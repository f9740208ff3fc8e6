"""Incremental, idempotent ingestion of document folders into the profile's store.

:class:`Ingestor` walks the folders, compares each file with the manifest (size and mtime first,
then the sha256 of its content), and only loads, splits and embeds files that are new or changed.
Chunks of many files are embedded together in large batches, so a folder of small files keeps the
encoder as busy as one big file does. Deleted files lose their chunks. A bad file is skipped with a
one-line reason and the run goes on; see :mod:`appkit.ingest.manifest` for why an interrupted run
never leaves duplicates or loses stored chunks.

Example:
    >>> import tempfile, pathlib
    >>> from appkit.config import Profile
    >>> from appkit.ingest.pipeline import Ingestor
    >>> from appkit.testing import HashingEmbeddings
    >>> folder = pathlib.Path(tempfile.mkdtemp()); _ = (folder / "a.txt").write_text("hello world")
    >>> profile = Profile(store=Profile().store.__class__(path=tempfile.mkdtemp()))
    >>> report = Ingestor(profile, embeddings=HashingEmbeddings()).run([folder])
    >>> (report.added, report.chunks_embedded)
    (1, 1)
"""

from __future__ import annotations

import fnmatch
import os
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

from appkit.config import Profile
from appkit.errors import AppkitError, EmbedderMismatchError
from appkit.ingest.loaders import loader_for
from appkit.ingest.manifest import FileRecord, Manifest
from appkit.ingest.prepare import (  # noqa: F401 - chunk_id is re-exported for callers
    FilePreparer,
    PreparedFile,
    Skipped,
    chunk_id,
    clean_meta,
)
from appkit.store.chroma import ChromaStore, embedder_identity

EMBEDDER_META = "embedder"
BATCH_CHUNKS = 1024  # chunks per embedding + store write: bounds memory, and lets the encoder sort by length


@dataclass
class IngestReport:
    """What one ingestion run did."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    ignored: int = 0  # files of a type no loader reads
    chunks_embedded: int = 0
    chunks_deleted: int = 0
    skipped: list[Skipped] = field(default_factory=list)
    seconds: float = 0.0
    timings: dict[str, float] = field(default_factory=dict)
    files: list[tuple[str, str]] = field(default_factory=list)  # (path, status) per file seen

    @property
    def ok(self) -> bool:
        return not self.skipped

    def to_dict(self) -> dict[str, Any]:
        return {
            "added": self.added, "updated": self.updated, "unchanged": self.unchanged,
            "deleted": self.deleted, "ignored": self.ignored,
            "chunks_embedded": self.chunks_embedded, "chunks_deleted": self.chunks_deleted,
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
            "seconds": round(self.seconds, 3),
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


class Ingestor:
    """Ingest folders into a profile's Chroma collection, incrementally.

    Args:
        profile: chunking, embedding and store settings.
        embeddings: the embedder (default: the profile's, loaded only if something is embedded).
        store: the store (default: the profile's Chroma collection).
        progress: show a progress bar (default: when stderr is a terminal).
    """

    def __init__(self, profile: Profile, *, embeddings: Embeddings | None = None,
                 store: ChromaStore | None = None, progress: bool | None = None):
        self.profile = profile
        self._embeddings = embeddings
        self._store = store
        self.progress = progress
        self.data_dir = profile.data_dir
        self.manifest = Manifest(self.data_dir / "manifest.sqlite")
        r = profile.retrieval
        self.preparer = FilePreparer(r.chunk_size, r.chunk_overlap)
        self.pipeline_version = self.preparer.pipeline_version

    # --- lazily built parts ------------------------------------------------------------------

    @property
    def embeddings(self) -> Embeddings:
        if self._embeddings is None:
            from appkit.models import make_embeddings

            self._embeddings = make_embeddings(self.profile)
        return self._embeddings

    @property
    def store(self) -> ChromaStore:
        if self._store is None:
            self._store = ChromaStore(self.profile.store, self.data_dir, self.embeddings)
        return self._store

    @property
    def splitter(self) -> Any:
        return self.preparer.splitter

    @property
    def embedder_id(self) -> str:
        # Built, not loaded: the identity includes the backend (e.g. "all-minilm-l6-v2@onnx-int8"),
        # which the model name alone does not.
        return embedder_identity(self.embeddings)

    # --- the run -----------------------------------------------------------------------------

    def check_embedder(self) -> None:
        """Refuse to mix embedders in one collection (cheap: reads the manifest only)."""
        stamped = self.manifest.meta(EMBEDDER_META)
        if stamped and stamped != self.embedder_id:
            raise EmbedderMismatchError(
                f"the store in {self.data_dir} was embedded with '{stamped}', but the profile "
                f"names '{self.embedder_id}'. Re-embed everything with: appkit ingest --reembed "
                "(or set embedding.model back)"
            )

    def reembed(self) -> None:
        """Drop the collection and the manifest so the next run embeds everything again."""
        generation = self.manifest.generation
        self.store.drop()
        self.manifest.reset()
        self.manifest.set_meta("generation", str(generation + 1))

    def run(self, paths: Sequence[str | os.PathLike], *, rehash: bool = False,
            on_file: Callable[[str, str], None] | None = None) -> IngestReport:
        """Ingest ``paths`` (folders or files): add new files, update changed ones, drop deleted.

        Args:
            paths: folders or single files.
            rehash: hash every file even when size and mtime are unchanged.
            on_file: called with (path, status) for each file as it is decided.

        Returns:
            The run's :class:`IngestReport`; ``report.ok`` is false when a file was skipped.
        """
        started = time.perf_counter()
        report = IngestReport()
        for key in ("scan", "load_split", "embed", "write"):
            report.timings[key] = 0.0
        self.check_embedder()
        self._recover()

        def note(path: str, status: str) -> None:
            report.files.append((path, status))
            if on_file:
                on_file(path, status)

        todo = list(self._scan(paths, report, note, rehash))
        self._ingest(todo, report, note)
        if report.chunks_embedded and not self.manifest.meta(EMBEDDER_META):
            self.manifest.set_meta(EMBEDDER_META, self.embedder_id)
        if report.chunks_embedded or report.chunks_deleted or report.deleted:
            self.manifest.bump_generation()
        report.seconds = time.perf_counter() - started
        return report

    def _ingest(self, todo: list[tuple[Path, str, Any]], report: IngestReport,
                note: Callable[[str, str], None]) -> None:
        """Prepare, embed and write the files the scan left to do (the engine's part of a run)."""
        batch: list[PreparedFile] = []
        batch_chunks = 0
        bar = self._bar(len(todo))
        try:
            # Writes stay in this thread: on 2 cores a background writer slowed the encoder more
            # than it hid (10k chunks: 165.7 -> 142.8 chunks/s; benchmarks/RESULTS_ingest.md).
            for item, result in self._prepared(todo, report.timings):
                if bar is not None:
                    bar.update(1)
                prepared = self._settle(str(item[0]), item[2].st_mtime_ns, result, report, note)
                if prepared is None:
                    continue
                batch.append(prepared)
                batch_chunks += len(prepared.chunks)
                if batch_chunks >= BATCH_CHUNKS:
                    self._flush(batch, report, note)
                    batch, batch_chunks = [], 0
            self._flush(batch, report, note)
        finally:
            if bar is not None:
                bar.close()

    def _settle(self, source: str, mtime_ns: int, result: PreparedFile | Skipped | None,
                report: IngestReport, note: Callable[[str, str], None]) -> PreparedFile | None:
        """Record an unchanged or skipped file; return a prepared one, which still needs writing."""
        if result is None:
            self.manifest.touch(source, mtime_ns)  # touched, not changed
            report.unchanged += 1
            note(source, "unchanged")
            return None
        if isinstance(result, Skipped):
            report.skipped.append(result)
            note(source, "skipped")
            return None
        return result

    def _bar(self, total: int) -> Any:
        show = self.progress if self.progress is not None else os.isatty(2)
        if not show or total < 2:
            return None
        from tqdm import tqdm

        return tqdm(total=total, unit="file", desc="ingest", leave=False)

    def _recover(self) -> None:
        orphans = self.manifest.orphans()
        if orphans:
            self.store.delete(orphans)
        self.manifest.clear_pending()

    def _included(self, rel: str) -> bool:
        d = self.profile.documents
        return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch("/" + rel, p) for p in d.include) and not any(
            fnmatch.fnmatch(rel, p) or fnmatch.fnmatch("/" + rel, p) for p in d.exclude
        )

    def _walk(self, root: Path) -> Iterator[Path]:
        if root.is_file() or (root.is_symlink() and not root.is_dir()):
            yield root
            return
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames.sort()
            for name in sorted(filenames):
                yield Path(dirpath) / name

    def _scan(self, paths: Sequence[str | os.PathLike], report: IngestReport,
              note: Callable[[str, str], None], rehash: bool) -> Iterator[tuple[Path, str, Any]]:
        """Yield (path, root, stat or None) for files that need loading; decide the rest."""
        t0 = time.perf_counter()
        for raw in paths:
            root = Path(os.path.expanduser(str(raw))).absolute()
            if not root.exists() and not root.is_symlink():
                raise AppkitError(f"{root}: no such file or folder")
            root_key = str(root)
            seen: set[str] = set()
            for path in self._walk(root):
                rel = path.name if path == root else str(path.relative_to(root))
                if not self._included(rel) or loader_for(path) is None:
                    report.ignored += 1
                    continue
                source = str(path)
                seen.add(source)
                old = self.manifest.get(source)
                try:
                    st = path.stat()
                except OSError as exc:
                    reason = "symlink loop" if exc.errno == 40 else f"unreadable: {exc.strerror}"
                    report.skipped.append(Skipped(source, reason))
                    note(source, "skipped")
                    continue
                if (old and not rehash and old.size == st.st_size and old.mtime_ns == st.st_mtime_ns
                        and old.pipeline == self._pipeline_for(path)):
                    report.unchanged += 1
                    note(source, "unchanged")
                    continue
                timings_scan = time.perf_counter() - t0
                report.timings["scan"] += timings_scan
                yield path, root_key, st
                t0 = time.perf_counter()
            # Files under this root that the manifest knows but the folder no longer has.
            gone = [r for r in self.manifest.all(root_key) if r.source not in seen]
            if root.is_file():
                gone = [r for r in gone if r.source == root_key]
            if gone:
                ids = [i for r in gone for i in r.chunk_ids]
                if ids:
                    self.store.delete(ids)
                self.manifest.commit([], [r.source for r in gone])
                report.deleted += len(gone)
                report.chunks_deleted += len(ids)
                for r in gone:
                    note(r.source, "deleted")
        report.timings["scan"] += time.perf_counter() - t0

    def _pipeline_for(self, path: Path) -> str:
        return self.preparer.pipeline_for(path)

    def prepare(self, item: tuple[Path, str, Any]) -> PreparedFile | Skipped | None:
        """Read, load and split one file; free of side effects, so it can run in another thread
        or process. Returns None when the content is unchanged (only the mtime moved)."""
        path, root, st = item
        old = self.manifest.get(str(path))
        result = self.preparer.prepare(path, root, st.st_size, st.st_mtime_ns,
                                       old_sha256=old.sha256 if old else "",
                                       old_pipeline=old.pipeline if old else "")
        if isinstance(result, PreparedFile):
            result.old = old
        return result

    def _prepared(self, todo: list[tuple[Path, str, Any]],
                  timings: dict[str, float]) -> Iterator[tuple[tuple[Path, str, Any], Any]]:
        """Prepare files in a background thread, a few ahead of the consumer, so reading and
        splitting overlap with embedding (the encoders release the GIL while they compute)."""
        if len(todo) < 2:
            for item in todo:
                t0 = time.perf_counter()
                result = self.prepare(item)
                timings["load_split"] += time.perf_counter() - t0
                yield item, result
            return

        def timed(item: tuple[Path, str, Any]) -> tuple[Any, float]:
            t0 = time.perf_counter()
            return self.prepare(item), time.perf_counter() - t0

        lookahead = 64
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="appkit-ingest") as pool:
            futures: deque = deque()
            items = iter(todo)
            for item in items:
                futures.append((item, pool.submit(timed, item)))
                if len(futures) >= lookahead:
                    break
            while futures:
                item, future = futures.popleft()
                result, seconds = future.result()
                timings["load_split"] += seconds
                nxt = next(items, None)
                if nxt is not None:
                    futures.append((nxt, pool.submit(timed, nxt)))
                yield item, result

    def _flush(self, batch: list[PreparedFile], report: IngestReport,
               note: Callable[[str, str], None]) -> None:
        if not batch:
            return
        texts = [c.page_content for p in batch for c in p.chunks]
        t0 = time.perf_counter()
        vectors = self.embeddings.embed_documents(texts)
        report.timings["embed"] += time.perf_counter() - t0
        self.write(batch, vectors, report, note)

    def write(self, batch: list[PreparedFile], vectors: Sequence[Any], report: IngestReport,
              note: Callable[[str, str], None]) -> None:
        """Store embedded files in this thread (:meth:`store_batch`) and count them in the report.

        Args:
            batch: prepared files whose ``old`` is the manifest's record of them (or None).
            vectors: one vector per chunk, in the batch's file and chunk order.
            report: counts and timings to add to.
            note: called with (path, "added" or "updated") for each file.
        """
        if not batch:
            return
        t0 = time.perf_counter()
        stale = self.store_batch(batch, vectors)
        report.timings["write"] += time.perf_counter() - t0
        self.account(batch, stale, report, note)

    def store_batch(self, batch: list[PreparedFile], vectors: Sequence[Any]) -> int:
        """Upsert a batch's chunks, drop its files' stale chunks, commit its manifest rows: the
        store path of both engines.

        The chunk ids are journalled first and the files' rows committed last, so a writer that
        dies in between leaves orphans the next run removes, never duplicates. Upserts make a
        retried write harmless. Touches only the store and the manifest (both safe to call from one
        other thread), so a :class:`WriteBehind` can run it while the next batch is embedded.
        Returns the number of stale chunks deleted.
        """
        self.manifest.begin({str(p.path): p.ids for p in batch})
        texts = [c.page_content for p in batch for c in p.chunks]
        metas = [clean_meta(c.metadata) for p in batch for c in p.chunks]
        ids = [i for p in batch for i in p.ids]
        self.store.upsert(ids, texts, metas, vectors)
        stale = []
        for p in batch:
            if p.old:
                keep = set(p.ids)
                stale.extend(i for i in p.old.chunk_ids if i not in keep)
        if stale:
            self.store.delete(stale)
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.manifest.commit(
            [FileRecord(str(p.path), p.root, p.sha256, p.size, p.mtime_ns,
                        self._pipeline_for(p.path), self.embedder_id, tuple(p.ids), now)
             for p in batch],
            [],
        )
        return len(stale)

    @staticmethod
    def account(batch: list[PreparedFile], stale: int, report: IngestReport,
                note: Callable[[str, str], None]) -> None:
        """Count a stored batch in the report and announce its files."""
        report.chunks_embedded += sum(len(p.chunks) for p in batch)
        report.chunks_deleted += stale
        for p in batch:
            if p.old:
                report.updated += 1
                note(str(p.path), "updated")
            else:
                report.added += 1
                note(str(p.path), "added")


class WriteBehind:
    """Write one embedded batch in a background thread while the caller embeds the next.

    The Ray engine's driver uses it: its embedding happens in the actors, so writing one batch
    while the next streams in costs the driver nothing. (The single-process engine writes in line:
    there the encoder already keeps both cores busy.) At most one batch is in flight, so memory
    stays bounded, and a single writer keeps the batches' journal-then-commit order. Counting and
    ``note`` callbacks run in the caller's thread (a UI's progress callback may not be called from
    elsewhere).

    Example:
        >>> with WriteBehind(ingestor, report, note) as writer:  # doctest: +SKIP
        ...     for batch, vectors in embedded_batches:
        ...         writer.submit(batch, vectors)
    """

    def __init__(self, ingestor: Ingestor, report: IngestReport,
                 note: Callable[[str, str], None]):
        self.ingestor = ingestor
        self.report = report
        self.note = note
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="appkit-write")
        self._pending: tuple[Any, list[PreparedFile]] | None = None
        self.report.timings.setdefault("write", 0.0)
        self.report.timings.setdefault("write_wait", 0.0)

    def _timed_store(self, batch: list[PreparedFile], vectors: Sequence[Any]) -> tuple[int, float]:
        t0 = time.perf_counter()
        stale = self.ingestor.store_batch(batch, vectors)
        return stale, time.perf_counter() - t0

    def submit(self, batch: list[PreparedFile], vectors: Sequence[Any]) -> None:
        """Wait for the batch before (raising its error, if any), then start writing this one."""
        self.wait()
        if batch:
            self._pending = (self._pool.submit(self._timed_store, batch, vectors), batch)

    def wait(self) -> None:
        """Block until the batch in flight is stored, and count it."""
        if self._pending is None:
            return
        future, batch = self._pending
        self._pending = None
        t0 = time.perf_counter()
        stale, seconds = future.result()
        self.report.timings["write_wait"] += time.perf_counter() - t0
        self.report.timings["write"] += seconds
        self.ingestor.account(batch, stale, self.report, self.note)

    def __enter__(self) -> WriteBehind:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        try:
            if exc_type is None:
                self.wait()
        finally:
            # An error elsewhere still lets the write in flight finish: its journal and commit
            # stay paired, and the next run finds a consistent manifest.
            self._pool.shutdown(wait=True)
