from __future__ import annotations

import json
from pathlib import Path

import pytest
from langchain_core.documents import Document

from appkit.errors import IngestError
from appkit.ingest.loaders import (
    CsvLoader,
    DocxLoader,
    HtmlLoader,
    JsonLoader,
    MarkdownLoader,
    PdfLoader,
    TextLoader,
    loader_for,
    register_loader,
    supported_extensions,
)
from tests.helpers import make_pdf


@pytest.mark.parametrize(
    ("name", "loader"),
    [("a.txt", TextLoader), ("a.md", MarkdownLoader), ("a.MARKDOWN", MarkdownLoader),
     ("a.html", HtmlLoader), ("a.htm", HtmlLoader), ("A.PDF", PdfLoader), ("a.docx", DocxLoader),
     ("a.csv", CsvLoader), ("a.json", JsonLoader), ("a.jsonl", JsonLoader)],
)
def test_loaders_are_registered_by_extension(name: str, loader: type) -> None:
    assert isinstance(loader_for(name), loader)


def test_unknown_extensions_have_no_loader() -> None:
    assert loader_for("photo.png") is None
    assert loader_for("Makefile") is None
    assert ".png" not in supported_extensions()


def test_new_formats_register_themselves(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from appkit.ingest import loaders

    class ReversedLoader:
        version = "rev-1"

        def load(self, path: Path) -> list[Document]:
            return [Document(page_content=path.read_text()[::-1])]

    monkeypatch.setattr(loaders, "_loaders", dict(loaders._loaders))
    register_loader(".REV", ReversedLoader)
    assert ".rev" in supported_extensions()
    (tmp_path / "x.rev").write_text("olleh")
    assert loader_for(tmp_path / "x.rev").load(tmp_path / "x.rev")[0].page_content == "hello"


def test_text(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes("\ufeffCafé opens at 8.\n".encode("utf-8"))
    docs = TextLoader().load(path)
    assert [d.page_content for d in docs] == ["Café opens at 8.\n"]


def test_markdown_sections_carry_their_heading_trail(tmp_path: Path) -> None:
    path = tmp_path / "meeting.md"
    path.write_text(
        "Preamble line.\n\n"
        "# Budget review\n\nIntro.\n\n"
        "## Decisions\n\n### Q3 budget ###\n\nCapped at 48k.\n\n"
        "```python\n# not a heading\nx = 1\n```\n\n"
        "## Actions\n\n- Tomasz books the booth.\n"
    )
    docs = MarkdownLoader().load(path)
    by_heading = {d.metadata.get("heading", ""): d.page_content for d in docs}
    assert list(by_heading) == [
        "", "Budget review", "Budget review > Decisions", "Budget review > Decisions > Q3 budget",
        "Budget review > Actions",
    ]
    assert by_heading[""] == "Preamble line."
    q3 = by_heading["Budget review > Decisions > Q3 budget"]
    assert "Capped at 48k." in q3 and "# not a heading" in q3, "fenced code stays in its section"


def test_html_drops_scripts_and_styles(tmp_path: Path) -> None:
    path = tmp_path / "page.html"
    path.write_text(
        "<html><head><title>Onboarding</title><style>p{color:red}</style>"
        "<script>var secret = 1;</script></head><body><h1>Day one</h1><p>Start at 09:30.</p>"
        "<noscript>enable js</noscript></body></html>"
    )
    [doc] = HtmlLoader().load(path)
    assert doc.metadata == {"heading": "Onboarding"}
    assert "Start at 09:30." in doc.page_content and "Day one" in doc.page_content
    for hidden in ("secret", "color:red", "enable js"):
        assert hidden not in doc.page_content


def test_html_without_visible_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "blank.html"
    path.write_text("<html><head><script>x()</script></head><body>  </body></html>")
    with pytest.raises(IngestError, match="no visible text"):
        HtmlLoader().load(path)


def test_pdf_one_document_per_page(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "policy.pdf", ["Trains under 500 km.", "", "Hotels up to EUR 135."])
    docs = PdfLoader().load(path)
    assert [d.metadata["page"] for d in docs] == [1, 3], "blank pages are left out"
    assert "Hotels up to EUR 135." in docs[1].page_content


def test_pdf_without_text_is_refused(tmp_path: Path) -> None:
    path = make_pdf(tmp_path / "scan.pdf", [""])
    with pytest.raises(IngestError, match="no extractable text"):
        PdfLoader().load(path)


def test_docx_sections_by_heading(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_paragraph("Intro before any heading.")
    document.add_heading("Kestrel-2", level=1)
    document.add_paragraph("Ships on 14 November.")
    document.add_heading("Osprey", level=2)
    document.add_paragraph("Firmware 3.1 adds Modbus.")
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Beta", "October"
    path = tmp_path / "roadmap.docx"
    document.save(str(path))

    docs = DocxLoader().load(path)
    assert [d.metadata.get("heading") for d in docs] == [None, "Kestrel-2", "Osprey"]
    assert docs[0].page_content == "Intro before any heading."
    assert docs[1].page_content == "Kestrel-2\nShips on 14 November."
    assert "Beta | October" in docs[2].page_content


def test_csv_one_document_per_row(tmp_path: Path) -> None:
    path = tmp_path / "offices.csv"
    path.write_text('city,lead,notes\nBerlin,Jonas,"big, old"\nLisbon,Inês,\n', encoding="utf-8")
    docs = CsvLoader().load(path)
    assert [d.metadata["row"] for d in docs] == [2, 3]
    assert docs[0].page_content == "city: Berlin\nlead: Jonas\nnotes: big, old"
    assert docs[1].page_content == "city: Lisbon\nlead: Inês", "empty cells are left out"


def test_csv_with_only_a_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("city,lead\n")
    with pytest.raises(IngestError, match="no rows"):
        CsvLoader().load(path)


def test_json_is_one_document(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"office": "Gdańsk", "desks": 23}))
    [doc] = JsonLoader().load(path)
    assert json.loads(doc.page_content) == {"office": "Gdańsk", "desks": 23}
    assert "Gdańsk" in doc.page_content


def test_jsonl_is_one_document_per_line(tmp_path: Path) -> None:
    path = tmp_path / "tickets.jsonl"
    path.write_text('{"id": 1, "text": "printer jam"}\n\n"plain string"\n')
    docs = JsonLoader().load(path)
    assert [d.metadata["row"] for d in docs] == [1, 3]
    assert docs[1].page_content == "plain string"


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [("bad.json", "{oops", "invalid JSON at line 1"),
     ("bad.jsonl", '{"ok": 1}\n{oops\n', "invalid JSON on line 2")],
)
def test_invalid_json_names_the_line(tmp_path: Path, name: str, content: str, reason: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(IngestError, match=reason):
        JsonLoader().load(path)


@pytest.mark.parametrize("loader", [TextLoader, MarkdownLoader, CsvLoader, JsonLoader, HtmlLoader])
def test_text_formats_refuse_blank_files(tmp_path: Path, loader: type) -> None:
    path = tmp_path / "blank.txt"
    path.write_text("  \n\n")
    with pytest.raises(IngestError, match="empty file"):
        loader().load(path)


def test_every_loader_has_a_version() -> None:
    versions = {loader_for(f"x{ext}").version for ext in supported_extensions()}
    assert all(versions) and len(versions) >= 7
