"""File loaders, registered by file extension.

A loader turns one file into LangChain ``Document`` s (one per page or section) with ``page`` and
``heading`` metadata where the format has them. A file that cannot be read raises
:class:`~appkit.errors.IngestError` with a one-line reason; the ingestion run records it and goes on.
New formats register themselves: ``register_loader(".rtf", RtfLoader)``.

Example:
    >>> from appkit.ingest.loaders import loader_for
    >>> type(loader_for("notes.md")).__name__
    'MarkdownLoader'
"""

from __future__ import annotations

import csv
import io
import json
import logging
import re
from pathlib import Path
from typing import Callable, Protocol

from langchain_core.documents import Document

from appkit.errors import IngestError, MissingDependencyError
from appkit.lazy import require


class Loader(Protocol):
    """Reads one file into documents.

    Contract: ``load`` returns at least one document with non-blank ``page_content``, or raises
    :class:`IngestError` saying why not. It never returns partial garbage for a corrupt file.
    ``version`` changes whenever the output for the same file would change, so the manifest
    re-ingests files read by an older version.
    """

    version: str

    def load(self, path: Path) -> list[Document]: ...


_loaders: dict[str, Callable[[], Loader]] = {}


def register_loader(extension: str, factory: Callable[[], Loader]) -> None:
    """Register ``factory`` for files ending in ``extension`` (e.g. ``".pdf"``)."""
    _loaders[extension.lower()] = factory


def supported_extensions() -> list[str]:
    """Every extension a loader is registered for."""
    return sorted(_loaders)


def loader_for(path: str | Path) -> Loader | None:
    """The loader for ``path``'s extension, or None when the type is not supported."""
    factory = _loaders.get(Path(path).suffix.lower())
    return factory() if factory else None


def read_bytes(path: Path) -> bytes:
    """Read a file, turning OS failures into one-line reasons."""
    try:
        data = path.read_bytes()
    except PermissionError:
        raise IngestError("unreadable: permission denied") from None
    except OSError as exc:
        if exc.errno == 40:  # ELOOP
            raise IngestError("symlink loop") from None
        raise IngestError(f"unreadable: {exc.strerror or exc}") from None
    if not data.strip():
        raise IngestError("empty file")
    return data


def decode_text(data: bytes) -> str:
    """Decode text as UTF-8 (BOM allowed), refusing binary content."""
    if b"\x00" in data[:8192]:
        raise IngestError("binary content in a text file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise IngestError(f"not UTF-8 text (bad byte at offset {exc.start})") from None
    if not text.strip():
        raise IngestError("empty file")
    return text


class TextLoader:
    """Plain text: one document."""

    version = "text-1"

    def load(self, path: Path) -> list[Document]:
        return [Document(page_content=decode_text(read_bytes(path)))]


_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")


class MarkdownLoader:
    """Markdown: one document per section, with the heading trail in ``heading``."""

    version = "markdown-1"

    def load(self, path: Path) -> list[Document]:
        text = decode_text(read_bytes(path))
        docs: list[Document] = []
        trail: list[str] = []
        lines: list[str] = []
        in_fence = False

        def flush() -> None:
            body = "\n".join(lines).strip()
            if body:
                meta = {"heading": " > ".join(trail)} if trail else {}
                docs.append(Document(page_content=body, metadata=meta))
            lines.clear()

        for line in text.splitlines():
            if line.lstrip().startswith(("```", "~~~")):
                in_fence = not in_fence
            match = None if in_fence else _HEADING.match(line)
            if match:
                flush()
                level = len(match.group(1))
                trail[:] = trail[: level - 1] + [match.group(2)]
            lines.append(line)
        flush()
        if not docs:
            raise IngestError("empty file")
        return docs


class HtmlLoader:
    """HTML: visible text of the page (scripts and styles dropped), title as heading."""

    version = "html-1"

    def load(self, path: Path) -> list[Document]:
        text = decode_text(read_bytes(path))
        bs4 = require("bs4", extra="docs", package="beautifulsoup4")
        soup = bs4.BeautifulSoup(text, "html.parser")
        for tag in soup(["script", "style", "noscript"]):
            tag.decompose()
        title = soup.title.get_text(strip=True) if soup.title else ""
        body = re.sub(r"\n{3,}", "\n\n", soup.get_text("\n", strip=True))
        if not body.strip():
            raise IngestError("no visible text in the HTML")
        return [Document(page_content=body, metadata={"heading": title} if title else {})]


class PdfLoader:
    """PDF via pypdf: one document per page with a 1-based ``page``."""

    version = "pdf-1"

    def load(self, path: Path) -> list[Document]:
        data = read_bytes(path)
        pypdf = require("pypdf", extra="docs")
        # pypdf logs repairable damage ("EOF marker not found") itself; the run's summary already
        # reports files it cannot read, so its log lines are noise on the terminal.
        logging.getLogger("pypdf").setLevel(logging.ERROR)
        try:
            reader = pypdf.PdfReader(io.BytesIO(data))
            if reader.is_encrypted:
                try:
                    ok = reader.decrypt("")
                except Exception:  # noqa: BLE001 - pypdf raises several types here
                    ok = 0
                if not ok:
                    raise IngestError("encrypted PDF (needs a password)")
            pages = [(i + 1, page.extract_text() or "") for i, page in enumerate(reader.pages)]
        except IngestError:
            raise
        except Exception as exc:  # noqa: BLE001 - pypdf's errors for broken files vary
            raise IngestError(f"corrupt PDF ({type(exc).__name__}: {exc})"[:200]) from None
        docs = [Document(page_content=t, metadata={"page": n}) for n, t in pages if t.strip()]
        if not docs:
            raise IngestError("PDF has no extractable text (scanned images?)")
        return docs


class DocxLoader:
    """Word .docx via python-docx: one document per heading section."""

    version = "docx-1"

    def load(self, path: Path) -> list[Document]:
        data = read_bytes(path)
        docx = require("docx", extra="docs", package="python-docx")
        try:
            document = docx.Document(io.BytesIO(data))
        except Exception as exc:  # noqa: BLE001 - zip and XML errors both mean corrupt
            raise IngestError(f"corrupt .docx ({type(exc).__name__})") from None
        docs: list[Document] = []
        heading = ""
        lines: list[str] = []

        def flush() -> None:
            body = "\n".join(lines).strip()
            if body:
                docs.append(Document(page_content=body, metadata={"heading": heading} if heading else {}))
            lines.clear()

        for para in document.paragraphs:
            style = (para.style.name if para.style is not None else "") or ""
            if style.lower().startswith("heading") or style == "Title":
                flush()
                heading = para.text.strip()
            if para.text.strip():
                lines.append(para.text)
        for table in document.tables:
            for row in table.rows:
                lines.append(" | ".join(cell.text for cell in row.cells))
        flush()
        if not docs:
            raise IngestError("empty document")
        return docs


class CsvLoader:
    """CSV: one document per row, written as ``column: value`` lines, with ``row`` metadata."""

    version = "csv-1"

    def load(self, path: Path) -> list[Document]:
        text = decode_text(read_bytes(path))
        try:
            rows = list(csv.DictReader(io.StringIO(text)))
        except csv.Error as exc:
            raise IngestError(f"malformed CSV ({exc})") from None
        docs = [
            Document(
                page_content="\n".join(f"{k}: {v}" for k, v in row.items() if k and v),
                metadata={"row": i},
            )
            for i, row in enumerate(rows, start=2)
        ]
        docs = [d for d in docs if d.page_content.strip()]
        if not docs:
            raise IngestError("CSV has a header but no rows")
        return docs


class JsonLoader:
    """JSON (one document) and JSON Lines (one document per line, ``row`` = line number)."""

    version = "json-1"

    def load(self, path: Path) -> list[Document]:
        text = decode_text(read_bytes(path))
        if path.suffix.lower() == ".jsonl":
            docs = []
            for n, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise IngestError(f"invalid JSON on line {n} ({exc.msg})") from None
                docs.append(Document(page_content=_json_text(record), metadata={"row": n}))
            return docs
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            raise IngestError(f"invalid JSON at line {exc.lineno} ({exc.msg})") from None
        return [Document(page_content=_json_text(record))]


def _json_text(record: object) -> str:
    return record if isinstance(record, str) else json.dumps(record, ensure_ascii=False, indent=1)


for _ext in (".txt", ".text", ".rst", ".log"):
    register_loader(_ext, TextLoader)
for _ext in (".md", ".markdown"):
    register_loader(_ext, MarkdownLoader)
for _ext in (".html", ".htm"):
    register_loader(_ext, HtmlLoader)
register_loader(".pdf", PdfLoader)
register_loader(".docx", DocxLoader)
register_loader(".csv", CsvLoader)
register_loader(".json", JsonLoader)
register_loader(".jsonl", JsonLoader)

__all__ = [
    "Loader",
    "register_loader",
    "loader_for",
    "supported_extensions",
    "MissingDependencyError",
]
