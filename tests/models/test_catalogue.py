from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from appkit.errors import ModelNotAvailableError
from appkit.models.catalogue import (
    ModelSpec,
    PackagePart,
    cache_dir,
    get_spec,
    list_models,
    register_model,
    resolve_model,
    verified_checksum,
)

BUILTIN = ("qwen2.5-coder-0.5b", "gemma3-270m", "smollm2-135m", "all-minilm-l6-v2")
PARTS = (b"GGUF" + b"a" * 3000, b"b" * 1234, b"c" * 17)


@pytest.fixture
def fake_packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three importable packages holding one model part each, like the packaged models."""
    site = tmp_path / "site"
    for i, blob in enumerate(PARTS, start=1):
        pkg = site / f"appkit_fake_model_part{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(blob)
    monkeypatch.syspath_prepend(str(site))
    return site


def fake_spec(**changes) -> ModelSpec:
    whole = b"".join(PARTS)
    spec = ModelSpec(
        name="fake-model",
        role="chat",
        format="gguf",
        parts=tuple(
            PackagePart(f"appkit_fake_model_part{i}", f"data/part{i:02d}.bin",
                        f"appkit-fake-model-part{i}")
            for i in range(1, len(PARTS) + 1)
        ),
        filename="fake-model.gguf",
        size=len(whole),
        sha256=hashlib.sha256(whole).hexdigest(),
        install="pip install appkit-fake-model-part1 appkit-fake-model-part2 appkit-fake-model-part3",
    )
    return ModelSpec(**{**spec.__dict__, **changes})


def test_builtin_models_are_listed() -> None:
    assert set(BUILTIN) <= {s.name for s in list_models()}
    assert get_spec("qwen2.5-coder-0.5b").role == "chat"
    assert get_spec("gemma3-270m").role == "completion"
    assert get_spec("all-minilm-l6-v2").format == "sentence-transformers"


def test_unknown_model_error_lists_the_known_names() -> None:
    with pytest.raises(ModelNotAvailableError) as err:
        get_spec("gpt-17")
    message = str(err.value)
    assert "unknown model 'gpt-17'" in message
    for name in BUILTIN:
        assert name in message


def test_missing_package_error_names_the_pip_command() -> None:
    spec = register_model(ModelSpec(
        name="ghost", role="chat", format="gguf",
        parts=(PackagePart("appkit_ghost_model_not_installed", "ghost.gguf", "ghost-model"),),
        install="pip install ghost-model",
    ))
    assert not spec.installed
    with pytest.raises(ModelNotAvailableError) as err:
        resolve_model("ghost")
    assert "needs the package ghost-model" in str(err.value)
    assert "pip install ghost-model" in str(err.value)


def test_missing_file_inside_an_installed_package(fake_packages: Path) -> None:
    (fake_packages / "appkit_fake_model_part2" / "data" / "part02.bin").unlink()
    register_model(fake_spec())
    with pytest.raises(ModelNotAvailableError, match="is missing from package appkit-fake-model-part2"):
        resolve_model("fake-model")


def test_multi_part_model_is_assembled_into_the_cache(fake_packages: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPKIT_CACHE", str(tmp_path / "cache"))
    spec = register_model(fake_spec())
    assert spec.installed
    assert verified_checksum(spec) is None

    resolved, path = resolve_model("fake-model")
    assert resolved is spec
    assert path == tmp_path / "cache" / "models" / "fake-model.gguf" == cache_dir() / spec.filename
    assert path.read_bytes() == b"".join(PARTS)
    assert verified_checksum(spec) == spec.sha256
    assert sorted(p.name for p in path.parent.iterdir()) == ["fake-model.gguf",
                                                             "fake-model.gguf.verified"]

    mtime = path.stat().st_mtime_ns
    assert resolve_model("fake-model")[1] == path
    assert path.stat().st_mtime_ns == mtime, "a verified model is not assembled again"


def test_a_changed_cached_file_is_assembled_again(fake_packages: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPKIT_CACHE", str(tmp_path / "cache"))
    register_model(fake_spec())
    path = resolve_model("fake-model")[1]
    path.write_bytes(b"truncated")
    assert resolve_model("fake-model")[1].read_bytes() == b"".join(PARTS)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [({"sha256": "0" * 64}, "checksum mismatch"), ({"size": 10}, "expected 10")],
    ids=["checksum", "size"],
)
def test_corrupt_assembly_fails_and_leaves_no_file(fake_packages: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   changes: dict, expected: str) -> None:
    monkeypatch.setenv("APPKIT_CACHE", str(tmp_path / "cache"))
    spec = register_model(fake_spec(**changes))
    with pytest.raises(ModelNotAvailableError) as err:
        resolve_model("fake-model")
    assert expected in str(err.value)
    assert spec.install in str(err.value), "the error says how to reinstall"
    models = tmp_path / "cache" / "models"
    assert list(models.iterdir()) == [], "no partial or unverified file is left behind"


def test_a_local_gguf_path_is_used_in_place(tmp_path: Path) -> None:
    gguf = tmp_path / "tuned.gguf"
    gguf.write_bytes(b"GGUF")
    spec, path = resolve_model(str(gguf))
    assert path == gguf and spec.local_path == str(gguf) and spec.format == "gguf"
    with pytest.raises(ModelNotAvailableError, match="does not exist"):
        resolve_model(str(tmp_path / "missing.gguf"))


def test_a_local_folder_is_a_sentence_transformers_model(tmp_path: Path) -> None:
    spec, path = resolve_model(str(tmp_path))
    assert path == tmp_path and spec.format == "sentence-transformers"


def test_registered_models_persist_for_later_processes(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from appkit.models import catalogue

    monkeypatch.setenv("APPKIT_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "tuned.gguf"
    gguf.write_bytes(b"GGUF")
    register_model(
        ModelSpec(name="team-tuned", role="chat", format="gguf", local_path=str(gguf),
                  lineage={"base": "gemma3-270m", "data_sha256": "ab12"}),
        persist=True,
    )
    stored = json.loads((tmp_path / "cache" / "models" / "registry.json").read_text())
    assert stored["team-tuned"]["lineage"]["base"] == "gemma3-270m"

    del catalogue._registry["team-tuned"]  # what a new process sees
    spec, path = resolve_model("team-tuned")
    assert path == gguf and spec.lineage == {"base": "gemma3-270m", "data_sha256": "ab12"}

    os.remove(gguf)
    assert not get_spec("team-tuned").installed
    with pytest.raises(ModelNotAvailableError, match="which is gone"):
        resolve_model("team-tuned")


def test_an_unreadable_registry_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APPKIT_CACHE", str(tmp_path / "cache"))
    registry = tmp_path / "cache" / "models" / "registry.json"
    registry.parent.mkdir(parents=True)
    registry.write_text("{not json")
    with pytest.raises(ModelNotAvailableError, match="fix or delete it"):
        list_models()
