"""Helpers shared by the tests (fixtures live in ``conftest.py``)."""

from __future__ import annotations

from pathlib import Path

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
