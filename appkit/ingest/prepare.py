"""Read, load and split one file: the side-effect-free step both ingestion engines share.

:class:`FilePreparer` holds only the chunking settings, so it pickles small and runs anywhere: in the
single-process engine's background thread, or in a Ray task on another machine. It never touches the
manifest or the store; the caller passes what the manifest knows about the file (its old hash and
pipeline) and decides what to do with the result.

Example:
    >>> import tempfile, pathlib
    >>> from appkit.ingest.prepare import FilePreparer
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "a.txt"; _ = path.write_text("hello world")
    >>> st = path.stat()
    >>> prepared = FilePreparer(chunk_size=200, chunk_overlap=20).prepare(path, "/", st.st_size, st.st_mtime_ns)
    >>> [c.page_content for c in prepared.chunks]
    ['hello world']
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from langchain_core.documents import Document

from appkit.errors import AppkitError, IngestError
from appkit.ingest.loaders import loader_for

if TYPE_CHECKING:
    from appkit.ingest.manifest import FileRecord


@dataclass
class Skipped:
    """A file that was not ingested, and why."""

    path: str
    reason: str


@dataclass
class PreparedFile:
    """A new or changed file, loaded and split, waiting for its batch to be embedded.

    ``old`` is the manifest's record of the file's previous version (its chunks not reused by the
    new version are deleted when this one is written).
    """

    path: Path
    root: str
    sha256: str
    size: int
    mtime_ns: int
    chunks: list[Document]
    ids: list[str]
    old: FileRecord | None = None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def chunk_id(source: str, file_sha: str, index: int) -> str:
    """Stable chunk id: the same file content at the same path always gets the same ids."""
    src = hashlib.sha1(source.encode("utf-8")).hexdigest()[:12]
    return f"{src}-{file_sha[:16]}-{index:05d}"


class FilePreparer:
    """Turn one file into chunks with deterministic ids, or say why it cannot be ingested.

    Args:
        chunk_size: characters per chunk (``retrieval.chunk_size``).
        chunk_overlap: characters shared by neighbouring chunks (``retrieval.chunk_overlap``).
    """

    def __init__(self, chunk_size: int, chunk_overlap: int):
        self.chunk_size = chunk_size
        self.chunk_overlap = chunk_overlap
        self.pipeline_version = f"split-recursive-{chunk_size}-{chunk_overlap}-v1"
        self._splitter: Any = None

    def __getstate__(self) -> dict:
        # The splitter is rebuilt where the preparer lands (cheap), not shipped with it.
        return {**self.__dict__, "_splitter": None}

    @property
    def splitter(self) -> Any:
        if self._splitter is None:
            from langchain_text_splitters import RecursiveCharacterTextSplitter

            self._splitter = RecursiveCharacterTextSplitter(
                chunk_size=self.chunk_size, chunk_overlap=self.chunk_overlap, add_start_index=True
            )
        return self._splitter

    def pipeline_for(self, path: Path) -> str:
        """The loader and splitter versions that cut ``path``; a change re-ingests the file."""
        loader = loader_for(path)
        return f"{loader.version if loader else 'none'}/{self.pipeline_version}"

    def load(self, path: Path) -> list[Document]:
        """The file's documents (pages, sections), or :class:`IngestError` saying why not."""
        loader = loader_for(path)
        if loader is None:
            raise IngestError(f"no loader reads '{path.suffix}' files")
        return loader.load(path)

    def split(self, docs: list[Document]) -> list[Document]:
        """The non-blank chunks of ``docs``."""
        return [c for c in self.splitter.split_documents(docs) if c.page_content.strip()]

    def prepare(self, path: Path, root: str, size: int, mtime_ns: int, *, old_sha256: str = "",
                old_pipeline: str = "") -> PreparedFile | Skipped | None:
        """Read, load and split ``path``.

        Args:
            path: the file.
            root: the folder it was found under (recorded in the manifest).
            size: its size when scanned.
            mtime_ns: its modification time when scanned.
            old_sha256: the content hash the manifest has for it ("" for a new file).
            old_pipeline: the pipeline that cut the manifest's version.

        Returns:
            The chunks; None when the content and pipeline are unchanged (only the mtime moved);
            :class:`Skipped` with a one-line reason for a file that cannot be ingested.
        """
        source = str(path)
        try:
            data = path.read_bytes()
        except OSError:
            data = None  # the loader's own read reports the reason
        sha = sha256_bytes(data) if data is not None else ""
        if old_sha256 and sha and old_sha256 == sha and old_pipeline == self.pipeline_for(path):
            return None
        try:
            chunks = self.split(self.load(path))
            if not chunks:
                raise IngestError("no text to index")
        except IngestError as exc:
            return Skipped(source, str(exc))
        except AppkitError:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad file never stops the run
            return Skipped(source, f"{type(exc).__name__}: {exc}"[:200])
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        ids = []
        for i, chunk in enumerate(chunks):
            meta = chunk.metadata
            meta.update(source=source, file_type=path.suffix.lower().lstrip("."),
                        content_hash=sha, chunk_index=i, ingested_at=now)
            meta.setdefault("heading", "")
            ids.append(chunk_id(source, sha, i))
        return PreparedFile(path, root, sha, size, mtime_ns, chunks, ids)


def clean_meta(meta: dict) -> dict:
    """Chroma metadata holds only str, int, float and bool values."""
    return {k: v for k, v in meta.items() if isinstance(v, (str, int, float, bool))}
