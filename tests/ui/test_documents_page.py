"""The Documents page: folder ingestion with per-file results, uploads, listing, search, deletion."""

from __future__ import annotations

from pathlib import Path

from appkit.config import load_profile
from tests.ui.conftest import by_label, texts
from ui.documents import stage_uploads


def manifest_sources(profile_path: Path) -> list[str]:
    from appkit.ingest.manifest import Manifest

    m = Manifest(load_profile(profile_path).data_dir / "manifest.sqlite")
    try:
        return [r.source for r in m.all()]
    finally:
        m.close()


def test_empty_collection(open_page) -> None:
    at = open_page("documents")
    assert [m.value for m in at.metric][:2] == ["0", "0"]
    assert "The collection is empty" in texts(at)


def test_ingesting_a_folder_shows_a_result_per_file(open_page, handbook, ui_profile) -> None:
    (handbook / "broken.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    (handbook / "image.png").write_bytes(b"\x89PNG")  # a type no loader reads: ignored
    at = open_page("documents")
    by_label(at.text_input, "Folder").input(str(handbook))
    by_label(at.button, "Ingest folder").click().run()
    assert not at.exception
    assert "1 added" in texts(at) and "1 skipped" in texts(at)
    results = at.dataframe[0].value
    rows = {r["file"]: r for r in results.to_dict("records")}
    assert rows["handbook.md"]["status"].endswith("added")
    assert rows["broken.pdf"]["status"].endswith("skipped")
    assert "PDF" in rows["broken.pdf"]["reason"]
    assert [m.value for m in at.metric][:2] == ["1", "3"]
    assert manifest_sources(ui_profile) == [str(handbook / "handbook.md")]


def test_ingesting_a_missing_folder_says_so(open_page, tmp_path) -> None:
    at = open_page("documents")
    by_label(at.text_input, "Folder").input(str(tmp_path / "nope"))
    by_label(at.button, "Ingest folder").click().run()
    assert any("No such file or folder" in str(e.value) for e in at.error)


def test_bad_uploads_are_refused_with_a_reason_and_change_nothing(tmp_path, ui_profile,
                                                                   ingested) -> None:
    data_dir = load_profile(ui_profile).data_dir
    before = manifest_sources(ui_profile)
    staged = stage_uploads([("evil.exe", b"MZ\x90"), ("scan.pdf", b"%PDF-1.7 garbage"),
                            ("empty.txt", b"   "), ("../../escape.md", b"# Hi\n\nText.")],
                           data_dir)
    reasons = dict(staged.rejected)
    assert reasons["evil.exe"] == "unsupported file type .exe"
    assert reasons["scan.pdf"].startswith("corrupt PDF")
    assert reasons["empty.txt"] == "empty file"
    assert [p.name for p in staged.accepted] == ["escape.md"]
    assert staged.accepted[0].parent == data_dir / "uploads"
    assert manifest_sources(ui_profile) == before
    assert sorted(p.name for p in (data_dir / "uploads").iterdir()) == ["escape.md"]


def test_upload_ingests_good_files_and_explains_the_rest(open_page, ui_profile, ingested) -> None:
    before = manifest_sources(ui_profile)
    at = open_page("documents")
    at.file_uploader[0].set_value([
        ("notes.txt", b"The beta budget is forty thousand euros.", "text/plain"),
        ("evil.exe", b"MZ\x90", "application/octet-stream"),
        ("broken.pdf", b"%PDF-1.7 garbage", "application/pdf"),
    ])
    by_label(at.button, "Add to collection").click().run()
    assert not at.exception, [e.value for e in at.exception]
    page = texts(at)
    assert "1 added" in page and "2 file(s) were not added" in page
    rows = {r["file"]: r for r in at.dataframe[0].value.to_dict("records")}
    assert rows["notes.txt"]["status"].endswith("added")
    assert rows["evil.exe"]["reason"] == "unsupported file type .exe"
    assert rows["broken.pdf"]["reason"].startswith("corrupt PDF")
    uploads = load_profile(ui_profile).data_dir / "uploads"
    assert manifest_sources(ui_profile) == sorted(before + [str(uploads / "notes.txt")])
    assert sorted(p.name for p in uploads.iterdir()) == ["notes.txt"]


def test_only_bad_uploads_leave_the_collection_unchanged(open_page, ui_profile, ingested) -> None:
    before = manifest_sources(ui_profile)
    at = open_page("documents")
    at.file_uploader[0].set_value(("scan.pdf", b"%PDF-1.7 garbage", "application/pdf"))
    by_label(at.button, "Add to collection").click().run()
    [row] = at.dataframe[0].value.to_dict("records")
    assert "1 file(s) were not added; the reasons are below" in texts(at)
    assert row["file"] == "scan.pdf" and row["reason"].startswith("corrupt PDF")
    assert manifest_sources(ui_profile) == before


def test_library_search_and_delete(open_page, ingested, ui_profile) -> None:
    (ingested / "other.txt").write_text("Parking permits are issued by reception.", encoding="utf-8")
    from ui.testing import fake_app

    fake_app(load_profile(ui_profile)).ingest([ingested])
    at = open_page("documents")
    assert len(at.dataframe[0].value) == 2
    at.text_input(key="doc-filter").input("handbook").run()
    assert at.dataframe[0].value["name"].tolist() == ["handbook.md"]
    at.text_input(key="doc-content-query").input("parking permits").run()
    assert "other.txt" in texts(at)
    at.text_input(key="doc-filter").input("").run()
    at.multiselect(key="doc-delete-choice").select(str(ingested / "other.txt")).run()
    at.checkbox(key="doc-delete-confirm").check().run()
    at.button(key="doc-delete").click().run()
    assert not at.exception
    assert manifest_sources(ui_profile) == [str(ingested / "handbook.md")]
    assert at.dataframe[0].value["name"].tolist() == ["handbook.md"]
    assert [m.value for m in at.metric][0] == "1"
