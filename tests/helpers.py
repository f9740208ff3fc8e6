"""Helpers shared by the tests (fixtures live in ``conftest.py``)."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
EXAMPLE_DOCS = EXAMPLES / "docs"


def make_pdf(path: Path, pages: list[str]) -> Path:
    """A PDF with one line of text per page (reportlab)."""
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), invariant=1)
    for text in pages:
        pdf.drawString(72, 720, text)
        pdf.showPage()
    pdf.save()
    return path


def store_ids(store) -> set[str]:
    """Every chunk id in a :class:`~appkit.store.chroma.ChromaStore`."""
    return set(store.collection.get(include=[])["ids"])


def manifest_ids(manifest) -> set[str]:
    """Every chunk id the manifest's committed rows own."""
    return {i for record in manifest.all() for i in record.chunk_ids}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0, proc: Any = None) -> None:
    """Poll ``url`` until it answers (any status), or fail."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=2.0)
            return
        except httpx.HTTPError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the process exited with {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
