"""A folder of hostile files: each is skipped with a one-line reason, the good files get in, and
nothing changes on a second run."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from appkit import cli
from appkit.app import App
from appkit.config import Profile
from appkit.ingest.pipeline import Ingestor
from appkit.testing import HashingEmbeddings
from tests.helpers import EXAMPLE_DOCS, make_pdf, manifest_ids, store_ids

GOOD = ("good.txt", "good.md", "good.pdf")

# file name -> the reason it must be skipped with (a substring of it)
HOSTILE = {
    "corrupt.pdf": "corrupt PDF",
    "encrypted.pdf": "encrypted PDF (needs a password)",
    "binary.txt": "binary content",
    "empty.txt": "empty file",
    "blank.md": "empty file",
    "latin1.txt": "not UTF-8 text",
    "broken.docx": "corrupt .docx",
    "locked.txt": "unreadable: permission denied",
    "loop.txt": "symlink loop",
}


def build_hostile_folder(folder: Path) -> Path:
    import pypdf

    folder.mkdir()
    (folder / "good.txt").write_text("The warehouse opens at seven and closes at nine.\n")
    (folder / "good.md").write_text("# Parking\n\nVisitors park on level minus two.\n")
    make_pdf(folder / "good.pdf", ["Fire drills happen on the first Monday of the month."])

    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.7\n1 0 obj << /Type /Catalog\x00\xff garbage")
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(EXAMPLE_DOCS / "travel-policy.pdf"))
    writer.encrypt(user_password="s3cret", owner_password="owner", algorithm="RC4-128")
    writer.write(folder / "encrypted.pdf")
    (folder / "binary.txt").write_bytes(bytes(range(256)) * 4)
    (folder / "empty.txt").write_bytes(b"")
    (folder / "blank.md").write_text("\n   \n\t\n")
    (folder / "latin1.txt").write_bytes("Café crème, naïve façade.".encode("latin-1"))
    (folder / "broken.docx").write_bytes(b"PK\x03\x04 this is not a zip archive")
    (folder / "locked.txt").write_text("nobody may read this")
    os.chmod(folder / "locked.txt", 0)
    os.symlink("loop.txt", folder / "loop.txt")  # points at itself
    (folder / "sub").mkdir()
    os.symlink("..", folder / "sub" / "cycle")  # a directory cycle must not be followed
    return folder


@pytest.fixture
def hostile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = build_hostile_folder(tmp_path / "hostile")
    if os.geteuid() == 0:
        # root reads a mode-000 file anyway, so make the OS answer as it would for a user.
        locked = folder / "locked.txt"
        real_read_bytes = Path.read_bytes

        def read_bytes(self: Path) -> bytes:
            if self == locked:
                raise PermissionError(13, "Permission denied", str(self))
            return real_read_bytes(self)

        monkeypatch.setattr(Path, "read_bytes", read_bytes)
    return folder


def run(profile: Profile, folder: Path, embeddings: HashingEmbeddings):
    ingestor = Ingestor(profile, embeddings=embeddings, progress=False)
    return ingestor, ingestor.run([folder])


def test_hostile_files_are_skipped_with_one_line_reasons(profile: Profile, hostile: Path,
                                                         embeddings: HashingEmbeddings) -> None:
    ingestor, report = run(profile, hostile, embeddings)

    reasons = {Path(s.path).name: s.reason for s in report.skipped}
    assert set(reasons) == set(HOSTILE), "every hostile file, and only those, is skipped"
    for name, expected in HOSTILE.items():
        assert expected in reasons[name], f"{name}: {reasons[name]!r}"
        assert "\n" not in reasons[name] and len(reasons[name]) <= 200
    assert "s3cret" not in json.dumps(report.to_dict())
    assert report.added == len(GOOD) and not report.ok
    assert {s["path"] for s in report.to_dict()["skipped"]} == {str(hostile / n) for n in HOSTILE}

    sources = {d.metadata["source"] for d in ingestor.store.get()}
    assert sources == {str(hostile / n) for n in GOOD}, "the store holds only the good files"
    assert store_ids(ingestor.store) == manifest_ids(ingestor.manifest)


def test_a_second_run_changes_nothing(profile: Profile, hostile: Path,
                                      embeddings: HashingEmbeddings) -> None:
    ingestor, _ = run(profile, hostile, embeddings)
    before, calls = store_ids(ingestor.store), embeddings.calls
    again, report = run(profile, hostile, embeddings)
    assert report.unchanged == len(GOOD) and report.added == report.updated == 0
    assert {Path(s.path).name for s in report.skipped} == set(HOSTILE)
    assert embeddings.calls == calls and store_ids(again.store) == before


def test_the_cli_lists_the_skipped_files_and_exits_1(profile: Profile, hostile: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(cli, "_app", lambda args: App(profile, embeddings=HashingEmbeddings()))
    assert cli.main(["ingest", str(hostile)]) == 1
    out, err = capsys.readouterr()
    assert f"{len(GOOD)} added" in out
    assert f"skipped {len(HOSTILE)} file(s):" in err
    for name, expected in HOSTILE.items():
        [line] = [ln for ln in err.splitlines() if ln.strip().startswith(str(hostile / name) + ":")]
        assert expected in line
    assert "Traceback" not in err

    assert cli.main(["ingest", "--json", str(hostile)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["unchanged"] == len(GOOD) and len(data["skipped"]) == len(HOSTILE)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode-000 files; the hostile fixture "
                    "simulates the permission error instead")
def test_a_really_unreadable_file(profile: Profile, tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    (folder / "secret.txt").write_text("x")
    os.chmod(folder / "secret.txt", 0)
    _, report = run(profile, folder, HashingEmbeddings())
    assert [s.reason for s in report.skipped] == ["unreadable: permission denied"]
