"""Generate the binary documents of the example corpus: a two-page PDF and a Word file.

The text documents in ``examples/docs`` are written by hand; these two formats are generated so
that their content stays reviewable here. Run it after editing the text below:

    .venv/bin/python examples/make_fixtures.py            # writes into examples/docs
    .venv/bin/python examples/make_fixtures.py /tmp/out   # or anywhere else

Needs ``reportlab`` (test extra) and ``python-docx`` (docs extra).
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

HERE = Path(__file__).resolve().parent

TRAVEL_POLICY_PAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Travel policy (page 1 of 2): booking and approval",
        (
            "Every business trip is approved by your team lead in Tripwise at least",
            "10 working days before departure. Trips abroad also need a signed",
            "risk briefing from the office manager.",
            "",
            "Trains are mandatory for journeys under 500 km; above that you may fly",
            "economy class. Rental cars need written approval from finance.",
        ),
    ),
    (
        "Travel policy (page 2 of 2): expenses",
        (
            "Hotels are reimbursed up to EUR 135 per night, breakfast included.",
            "The daily meal allowance is EUR 38, or EUR 19 on the day of",
            "arrival and the day of departure.",
            "",
            "File expense claims in Tripwise within 30 days of your return,",
            "with a photo of every receipt. Late claims are paid only with",
            "approval from the finance lead.",
        ),
    ),
)

ROADMAP_SECTIONS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Kestrel-2 humidity sensor",
        (
            "Kestrel-2 ships to customers on 14 November 2024.",
            "The battery life target is 18 months at one reading per minute.",
        ),
    ),
    (
        "Osprey data logger",
        (
            "Osprey firmware 3.1 adds Modbus RTU support. A public beta opens in October;",
            "general availability follows after two weeks without critical bugs.",
        ),
    ),
)

ROADMAP_MILESTONES = (
    ("Milestone", "Target"),
    ("Kestrel-2 pilot units to three lab customers", "September 2024"),
    ("Osprey 3.1 public beta", "October 2024"),
)


def make_pdf(path: Path) -> Path:
    """Write the two-page travel policy with reportlab (byte-for-byte reproducible)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), pagesize=A4, invariant=1)
    pdf.setTitle("Fernhill Instruments travel policy")
    pdf.setAuthor("Fernhill Instruments")
    for title, lines in TRAVEL_POLICY_PAGES:
        pdf.setFont("Helvetica-Bold", 14)
        pdf.drawString(72, 770, title)
        pdf.setFont("Helvetica", 11)
        y = 740
        for line in lines:
            pdf.drawString(72, y, line)
            y -= 16
        pdf.showPage()
    pdf.save()
    return path


def make_docx(path: Path) -> Path:
    """Write the product roadmap with headings and a milestone table (python-docx)."""
    import docx

    document = docx.Document()
    props = document.core_properties
    props.author = "Fernhill Instruments"
    props.created = props.modified = dt.datetime(2024, 7, 1, tzinfo=dt.timezone.utc)
    document.add_heading("Product roadmap, second half of 2024", level=0)
    for heading, paragraphs in ROADMAP_SECTIONS:
        document.add_heading(heading, level=1)
        for text in paragraphs:
            document.add_paragraph(text)
    document.add_heading("Milestones", level=1)
    table = document.add_table(rows=0, cols=2)
    for left, right in ROADMAP_MILESTONES:
        cells = table.add_row().cells
        cells[0].text, cells[1].text = left, right
    document.save(str(path))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=str(HERE / "docs"), help="output folder")
    out = Path(parser.parse_args(argv).out)
    out.mkdir(parents=True, exist_ok=True)
    for written in (make_pdf(out / "travel-policy.pdf"), make_docx(out / "product-roadmap.docx")):
        print(f"wrote {written} ({written.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
