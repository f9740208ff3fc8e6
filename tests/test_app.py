from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from appkit.app import App
from appkit.config import Profile, save_profile
from appkit.errors import AppkitError
from appkit.testing import FakeChatModel, HashingEmbeddings
from appkit.types import Answer


def test_ingest_uses_the_profile_paths_relative_to_the_profile(tmp_path: Path,
                                                                docs_dir: Path) -> None:
    profile = Profile.from_dict({"documents": {"paths": ["docs"]}, "store": {"path": "state"}})
    path = save_profile(profile, tmp_path / "appkit.toml")
    app = App.from_profile_file(path, embeddings=HashingEmbeddings())
    assert app.document_paths() == [str(docs_dir)]
    assert app.ingest().added == 3
    assert (tmp_path / "state" / "manifest.sqlite").exists()


def test_ingest_without_any_folder_says_what_to_do(profile: Profile) -> None:
    with pytest.raises(AppkitError, match="documents.paths"):
        App(profile, embeddings=HashingEmbeddings()).ingest()


def test_ingesting_never_builds_the_chat_model(profile: Profile, docs_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    import appkit.models

    def forbidden(*args, **kwargs):
        raise AssertionError("the chat model was built during ingestion")

    monkeypatch.setattr(appkit.models, "make_chat_model", forbidden)
    App(profile, embeddings=HashingEmbeddings()).ingest([docs_dir])


def test_ask_answers_from_the_ingested_files(profile: Profile, docs_dir: Path) -> None:
    llm = FakeChatModel(replies=["Forty thousand euros [1]."])
    app = App(profile, embeddings=HashingEmbeddings(), chat_model=llm)
    app.ingest([docs_dir])
    answer = app.ask("What is the beta budget for the third quarter?")
    assert answer.text == "Forty thousand euros [1]."
    assert answer.cited[0].source == str(docs_dir / "notes" / "beta.md")
    assert len(answer.citations) == profile.retrieval.k


def test_stream_ends_with_the_answer(profile: Profile, docs_dir: Path) -> None:
    app = App(profile, embeddings=HashingEmbeddings(), chat_model=FakeChatModel(replies=["a b c"]))
    app.ingest([docs_dir])
    items = list(app.stream("gamma data logger"))
    assert isinstance(items[-1], Answer) and "".join(items[:-1]) == "a b c"


def test_an_empty_store_answers_without_the_model(profile: Profile) -> None:
    llm = FakeChatModel()
    strict = dataclasses.replace(profile, retrieval=dataclasses.replace(profile.retrieval,
                                                                        min_relevance=0.5))
    answer = App(strict, embeddings=HashingEmbeddings(), chat_model=llm).ask("anything")
    assert not answer.found and llm.calls == []
