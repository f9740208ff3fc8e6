from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from appkit.config import (
    ChatConfig,
    DocumentsConfig,
    FinetuneConfig,
    GenerationConfig,
    Profile,
    PromptConfig,
    RetrievalConfig,
    ShotExample,
    StoreConfig,
    find_profile,
    load_profile,
    parse_condition,
    save_profile,
)
from appkit.errors import ConfigError

CUSTOM = Profile(
    task="summarize",
    documents=DocumentsConfig(paths=("notes", "~/papers"), include=("**/*.md",), exclude=()),
    chat=ChatConfig(
        model="smollm2-135m", n_ctx=2048, n_threads=2, best_of=3, reward_model="notes-rm",
        best_of_temperature=0.9,
        generation=GenerationConfig(max_tokens=64, temperature=0.0, stop=("\n\n", "Question:")),
    ),
    retrieval=RetrievalConfig(k=2, chunk_size=400, chunk_overlap=0, condense_history=False),
    prompt=PromptConfig(
        mode="few-shot",
        examples=(ShotExample("q1", "a1 [1]", "ctx1"), ShotExample("q2", "a2")),
    ),
    store=StoreConfig(path="/var/appkit", collection="team"),
    finetune=FinetuneConfig(method="prefix-tuning", lora_r=4, virtual_tokens=16),
    quality_gate={"faithfulness": ">= 0.7", "latency_p95_s": "< 5"},
)


@pytest.mark.parametrize("profile", [Profile(), CUSTOM], ids=["default", "custom"])
def test_profile_round_trips_through_dict(profile: Profile) -> None:
    data = profile.to_dict()
    assert "source" not in data
    assert Profile.from_dict(data) == profile


@pytest.mark.parametrize("profile", [Profile(), CUSTOM], ids=["default", "custom"])
def test_profile_round_trips_through_toml(profile: Profile, tmp_path: Path) -> None:
    path = save_profile(profile, tmp_path / "sub" / "appkit.toml")
    loaded = load_profile(path)
    assert loaded == profile
    assert loaded.source == path
    assert not list(path.parent.glob("*.tmp"))
    assert tomllib.loads(path.read_text())["chat"]["generation"]["stop"] == list(
        profile.chat.generation.stop
    )


def test_profile_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Profile().task = "code"  # type: ignore[misc]


def test_integers_are_accepted_for_floats() -> None:
    profile = Profile.from_dict({"chat": {"generation": {"temperature": 0}}})
    assert profile.chat.generation.temperature == 0.0
    assert isinstance(profile.chat.generation.temperature, float)


def test_relative_paths_resolve_against_the_profile_folder(tmp_path: Path) -> None:
    path = save_profile(Profile(store=StoreConfig(path="state")), tmp_path / "p" / "appkit.toml")
    profile = load_profile(path)
    assert profile.root == tmp_path / "p"
    assert profile.data_dir == tmp_path / "p" / "state"
    assert profile.resolve("/abs/docs") == Path("/abs/docs")


BAD_PROFILES = [
    pytest.param({"chat": {"modle": "x"}}, "chat.modle", "unknown key 'modle'", id="unknown-key"),
    pytest.param({"colour": "blue"}, "colour", "unknown key 'colour'", id="unknown-top-key"),
    pytest.param({"chat": {"generation": {"seeed": 1}}}, "chat.generation.seeed", "unknown key",
                 id="unknown-nested-key"),
    pytest.param({"retrieval": {"k": "four"}}, "retrieval.k", "expected an integer",
                 id="wrong-type"),
    pytest.param({"retrieval": {"k": True}}, "retrieval.k", "expected an integer",
                 id="bool-for-int"),
    pytest.param({"retrieval": {"condense_history": "yes"}}, "retrieval.condense_history",
                 "expected true or false", id="string-for-bool"),
    pytest.param({"chat": {"generation": {"temperature": "hot"}}},
                 "chat.generation.temperature", "expected a number", id="wrong-type-nested"),
    pytest.param({"documents": {"paths": "docs"}}, "documents.paths", "expected a list",
                 id="string-for-list"),
    pytest.param({"documents": {"paths": ["ok", 3]}}, "documents.paths[1]", "expected a string",
                 id="list-item"),
    pytest.param({"chat": "qwen"}, "chat", "expected a table", id="string-for-table"),
    pytest.param({"prompt": {"mode": "many-shot"}}, "prompt.mode", "'few-shot'", id="bad-enum"),
    pytest.param({"store": {"kind": "faiss"}}, "store.kind", "'chroma'", id="bad-store-kind"),
    pytest.param({"task": "dance"}, "task", "one of qa, summarize", id="bad-task"),
    pytest.param({"prompt": {"mode": "few-shot", "examples": [{"question": "q", "answer": "a"}]}},
                 "prompt.examples", "at least 2 example(s) for few-shot", id="few-shot-one-example"),
    pytest.param({"prompt": {"mode": "one-shot"}}, "prompt.examples",
                 "at least 1 example(s) for one-shot", id="one-shot-no-example"),
    pytest.param({"prompt": {"examples": [{"question": "q"}]}}, "prompt.examples[0].answer",
                 "missing key 'answer'", id="example-missing-answer"),
    pytest.param({"prompt": {"examples": [{"question": "q", "answer": "a", "why": "x"}]}},
                 "prompt.examples[0].why", "unknown key", id="example-unknown-key"),
    pytest.param({"prompt": {"template": "Question: {question}"}}, "prompt.template",
                 "{context}", id="template-without-context"),
    pytest.param({"prompt": {"template": "Sources: {context}"}}, "prompt.template",
                 "{question}", id="template-without-question"),
    pytest.param({"retrieval": {"k": 0}}, "retrieval.k", ">= 1", id="k-zero"),
    pytest.param({"chat": {"best_of": 0}}, "chat.best_of", "from 1 to 16", id="best-of-zero"),
    pytest.param({"chat": {"best_of": 4}}, "chat.reward_model", "when chat.best_of > 1",
                 id="best-of-without-reward-model"),
    pytest.param({"chat": {"best_of_temperature": -1}}, "chat.best_of_temperature", "0 to 5",
                 id="best-of-temperature"),
    pytest.param({"retrieval": {"chunk_size": 300, "chunk_overlap": 300}},
                 "retrieval.chunk_overlap", "overlap < chunk_size", id="overlap-too-big"),
    pytest.param({"retrieval": {"min_relevance": 1.5}}, "retrieval.min_relevance", "0 to 1",
                 id="relevance-range"),
    pytest.param({"chat": {"generation": {"top_p": 0}}}, "chat.generation.top_p", "(0, 1]",
                 id="top-p-range"),
    pytest.param({"chat": {"n_ctx": 64}}, "chat.n_ctx", ">= 256", id="n-ctx-small"),
    pytest.param({"finetune": {"method": "qlora"}}, "finetune.method", "'prefix-tuning'",
                 id="bad-finetune-method"),
    pytest.param({"finetune": {"lora_r": 0}}, "finetune.lora_r", ">= 1", id="lora-r-zero"),
    pytest.param({"finetune": {"virtual_tokens": 0}}, "finetune.virtual_tokens", ">= 1",
                 id="virtual-tokens-zero"),
    pytest.param({"quality_gate": {"faithfulness": "high"}}, "quality_gate.faithfulness",
                 "'>= 0.7'", id="bad-gate-condition"),
    pytest.param({"quality_gate": {"faithfulness": 0.7}}, "quality_gate.faithfulness",
                 "expected a string", id="gate-not-string"),
]


@pytest.mark.parametrize(("data", "key", "expected"), BAD_PROFILES)
def test_validation_errors_name_file_and_key(write_profile, data: dict, key: str,
                                             expected: str) -> None:
    path = write_profile(data)
    with pytest.raises(ConfigError) as err:
        load_profile(path)
    message = str(err.value)
    assert f"file {path}" in message
    assert f"key '{key}'" in message
    assert expected in message
    assert "\n" not in message
    assert err.value.path == str(path) and err.value.key == key


def test_validation_errors_without_a_file_name_the_key() -> None:
    with pytest.raises(ConfigError, match=r"^key 'retrieval\.k': expected an integer >= 1"):
        Profile.from_dict({"retrieval": {"k": -1}})


def test_missing_profile_says_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="appkit config init") as err:
        load_profile(tmp_path / "nope.toml")
    assert str(tmp_path / "nope.toml") in str(err.value)


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[chat\nmodel = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML") as err:
        load_profile(path)
    assert str(path) in str(err.value)


def test_find_profile_writes_defaults_when_missing(tmp_path: Path) -> None:
    profile = find_profile()
    assert (tmp_path / "appkit.toml").exists()
    assert profile == Profile()
    assert profile.source.resolve() == tmp_path / "appkit.toml"


def test_find_profile_without_create_writes_nothing(tmp_path: Path) -> None:
    profile = find_profile(create=False)
    assert profile == Profile()
    assert profile.source == tmp_path / "appkit.toml"
    assert not (tmp_path / "appkit.toml").exists()


def test_find_profile_reads_the_environment(tmp_path: Path, monkeypatch) -> None:
    path = save_profile(CUSTOM, tmp_path / "team.toml")
    monkeypatch.setenv("APPKIT_PROFILE", str(path))
    assert find_profile() == CUSTOM
    assert find_profile(tmp_path / "other.toml") == Profile()  # explicit wins


@pytest.mark.parametrize(
    ("text", "parsed"),
    [(">= 0.7", (">=", 0.7)), ("<5", ("<", 5.0)), (" == 1 ", ("==", 1.0)), ("> x", None),
     ("0.7", None), ("", None)],
)
def test_parse_condition(text: str, parsed) -> None:
    assert parse_condition(text) == parsed
