"""The document collection as the Documents page shows it: uploads, listing, deletion and statistics.

Nothing here imports Streamlit, so the rules are tested directly. Uploads are checked before they
touch the collection: each file is written to a staging folder, read with the loader for its type, and
only moved into ``<data dir>/uploads`` and ingested when it reads; an unsupported or corrupt file is
reported with its reason and the collection stays as it was.

Example:
    >>> import tempfile
    >>> from ui.documents import stage_uploads
    >>> staged = stage_uploads([("notes.txt", b"The beta budget is 40k."), ("x.exe", b"MZ")],
    ...                        tempfile.mkdtemp())
    >>> [p.name for p in staged.accepted], staged.rejected
    (['notes.txt'], [('x.exe', 'unsupported file type .exe')])
"""

from __future__ import annotations

import os
import re
import shutil
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from appkit.errors import AppkitError
from appkit.ingest.loaders import loader_for, supported_extensions

MAX_UPLOAD_BYTES = 200 * 1024 * 1024
_UNSAFE = re.compile(r"[^\w.\- ()]+", re.UNICODE)


def uploads_dir(data_dir: str | os.PathLike) -> Path:
    """Where uploaded files are kept (ingestion records their path as the source)."""
    return Path(data_dir) / "uploads"


def safe_name(name: str) -> str:
    """A file name without folders or odd characters (``../../x.md`` becomes ``x.md``)."""
    base = Path(name.replace("\\", "/")).name
    cleaned = _UNSAFE.sub("_", base).strip(" .")
    return cleaned[:120] or "upload"


@dataclass
class StagedUploads:
    """The outcome of checking uploads: files ready to ingest, and rejections with reasons."""

    accepted: list[Path] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)


def check_readable(path: Path) -> str | None:
    """Why ``path`` cannot be ingested, or None when its loader reads text from it."""
    loader = loader_for(path)
    if loader is None:
        return f"unsupported file type {path.suffix.lower() or '(no extension)'}"
    try:
        docs = loader.load(path)
    except AppkitError as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - a loader's library may raise anything on bad bytes
        return f"cannot read it ({type(exc).__name__}: {exc})"[:200]
    if not any(d.page_content.strip() for d in docs):
        return "no text to index"
    return None


def stage_uploads(files: Iterable[tuple[str, bytes]], data_dir: str | os.PathLike) -> StagedUploads:
    """Check uploaded files and move the readable ones into the uploads folder.

    Args:
        files: (file name, content) pairs as the browser sent them.
        data_dir: the profile's data directory.

    Returns:
        The accepted paths (under ``uploads/``) and the rejected names with a reason each.
    """
    target = uploads_dir(data_dir)
    staging = target / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    result = StagedUploads()
    for raw_name, data in files:
        name = safe_name(raw_name)
        if loader_for(name) is None:
            ext = Path(name).suffix.lower() or "(no extension)"
            result.rejected.append((raw_name, f"unsupported file type {ext}"))
            continue
        if len(data) > MAX_UPLOAD_BYTES:
            result.rejected.append((raw_name, f"too large ({len(data) / 1e6:.0f} MB; "
                                              f"the limit is {MAX_UPLOAD_BYTES / 1e6:.0f} MB)"))
            continue
        staged = staging / name
        staged.write_bytes(data)
        reason = check_readable(staged)
        if reason:
            staged.unlink(missing_ok=True)
            result.rejected.append((raw_name, reason))
            continue
        final = target / name
        os.replace(staged, final)
        result.accepted.append(final)
    shutil.rmtree(staging, ignore_errors=True)
    return result


def supported_types() -> list[str]:
    """Extensions without the dot, for the upload widget."""
    return [e.lstrip(".") for e in supported_extensions()]


def count_files(paths: Sequence[str | os.PathLike]) -> int:
    """How many files under ``paths`` a loader reads (the progress bar's total)."""
    total = 0
    for raw in paths:
        root = Path(os.path.expanduser(str(raw)))
        if root.is_file():
            total += loader_for(root) is not None
            continue
        for _dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            total += sum(1 for f in filenames if not f.startswith(".") and loader_for(f))
    return total


def document_rows(manifest: Any) -> list[dict[str, Any]]:
    """One row per ingested file, from the ingestion manifest (cheap: no store access)."""
    rows = []
    uploads = str(uploads_dir(Path(manifest.path).parent).resolve())
    for rec in manifest.all():
        path = Path(rec.source)
        folder = str(path.parent)
        rows.append({
            "name": path.name,
            "folder": "(uploaded)" if folder == uploads else folder,
            "type": path.suffix.lower().lstrip(".") or "?",
            "size_kb": round(rec.size / 1024, 1),
            "chunks": len(rec.chunk_ids),
            "ingested": rec.ingested_at.replace("T", " ").replace("+00:00", " UTC"),
            "source": rec.source,
        })
    return rows


def filter_rows(rows: Sequence[dict[str, Any]], query: str) -> list[dict[str, Any]]:
    """Rows whose path or folder label contains every word of ``query`` (case-insensitive)."""
    words = query.lower().split()
    return [r for r in rows if all(w in f"{r['source']} {r['folder']}".lower() for w in words)]


def delete_documents(app: Any, sources: Sequence[str]) -> int:
    """Remove files' chunks from the store and their rows from the manifest.

    An uploaded file's stored copy is deleted too. A file in a folder that is ingested again comes
    back; delete it from the folder to keep it out.

    Returns:
        How many chunks were deleted.
    """
    manifest = app.ingestor.manifest
    records = [r for r in (manifest.get(s) for s in sources) if r is not None]
    ids = [i for r in records for i in r.chunk_ids]
    if ids:
        app.store.delete(ids)
    manifest.commit([], [r.source for r in records])
    if records:
        manifest.bump_generation()
    uploads = uploads_dir(app.profile.data_dir).resolve()
    for r in records:
        path = Path(r.source)
        if path.parent.resolve() == uploads:
            path.unlink(missing_ok=True)
    return len(ids)


def collection_stats(manifest: Any) -> dict[str, Any]:
    """Documents, chunks, bytes, types, embedder and the last ingestion time."""
    records = list(manifest.all())
    types = Counter(Path(r.source).suffix.lower().lstrip(".") or "?" for r in records)
    return {
        "documents": len(records),
        "chunks": sum(len(r.chunk_ids) for r in records),
        "bytes": sum(r.size for r in records),
        "types": dict(types.most_common()),
        "embedder": manifest.meta("embedder") or "",
        "last_ingested": max((r.ingested_at for r in records), default=""),
    }


def when(iso: str, now: datetime | None = None) -> str:
    """A short, friendly time: ``"just now"``, ``"12 min ago"``, ``"3 h ago"``, ``"24 Nov"``."""
    if not iso:
        return "–"
    try:
        then = datetime.fromisoformat(iso)
    except ValueError:
        return iso[:10]
    if then.tzinfo is None:
        then = then.replace(tzinfo=timezone.utc)
    seconds = ((now or datetime.now(timezone.utc)) - then).total_seconds()
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return then.strftime("%d %b %Y").lstrip("0")
