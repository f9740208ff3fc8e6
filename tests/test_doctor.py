from __future__ import annotations

import pytest

from appkit import doctor
from appkit.models.catalogue import ModelSpec, PackagePart


@pytest.fixture
def fake_models(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing model instead of the real catalogue, so nothing is assembled or hashed."""
    missing = ModelSpec(name="ghost", role="chat", format="gguf",
                        parts=(PackagePart("appkit_ghost_pkg", "g.gguf", "ghost"),),
                        install="pip install ghost")
    monkeypatch.setattr("appkit.models.catalogue.list_models", lambda: [missing])


def test_package_versions() -> None:
    versions = doctor.package_versions()
    assert set(versions) == set(doctor.PACKAGES) and versions["langchain-core"]


def test_diagnose_and_render(fake_models, tmp_path) -> None:
    report = doctor.diagnose()
    assert report["models"] == [{"name": "ghost", "role": "chat", "installed": False,
                                 "install": "pip install ghost"}]
    assert report["profile"]["exists"] is False
    assert not (tmp_path / "appkit.toml").exists(), "doctor never writes a profile"
    text = doctor.render(report)
    assert "ghost                  not installed: pip install ghost" in text
    assert text.splitlines()[-1] in ("ok", "problems found")


def test_a_bad_profile_is_reported_not_raised(fake_models, tmp_path) -> None:
    (tmp_path / "appkit.toml").write_text("[chat]\nmodle = 1\n")
    report = doctor.diagnose()
    assert "unknown key 'modle'" in report["profile"]["error"]
    assert "profile: file appkit.toml" in doctor.render(report)
