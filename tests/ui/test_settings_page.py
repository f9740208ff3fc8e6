"""The Settings page: model, retriever, generation and prompt, saved back to the profile."""

from __future__ import annotations

from pathlib import Path

from appkit.config import load_profile
from tests.ui.conftest import by_label, texts


def save(at):
    by_label(at.button, "Save to profile").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_changes_are_saved_to_the_profile(open_page, ui_profile: Path) -> None:
    at = open_page("settings")
    assert {"dense", "bm25", "hybrid"} <= set(by_label(at.selectbox, "Retriever").options)
    assert "smollm2-135m" in by_label(at.selectbox, "Chat model").options
    by_label(at.selectbox, "Chat model").set_value("smollm2-135m")
    by_label(at.selectbox, "Retriever").set_value("bm25")
    by_label(at.slider, "Temperature").set_value(0.7)
    by_label(at.slider, "Top-p").set_value(0.8)
    by_label(at.number_input, "Top-k").set_value(20)
    by_label(at.number_input, "Max answer tokens").set_value(128)
    save(at)
    assert any("Saved to" in str(s.value) for s in at.success)
    p = load_profile(ui_profile)
    assert (p.chat.model, p.retrieval.retriever) == ("smollm2-135m", "bm25")
    g = p.chat.generation
    assert (g.temperature, g.top_p, g.top_k, g.max_tokens) == (0.7, 0.8, 20, 128)
    assert p.store.path == "data"  # untouched settings are kept


def test_tuned_models_are_offered(open_page, monkeypatch) -> None:
    from appkit.models.catalogue import ModelSpec, register_model

    register_model(ModelSpec(name="qwen-tuned-support", role="chat", format="gguf",
                             local_path="/tmp/tuned.gguf", lineage={"base": "qwen2.5-coder-0.5b"}))
    at = open_page("settings")
    options = by_label(at.selectbox, "Chat model").options  # as shown: name and tags
    assert "qwen-tuned-support  (fine-tuned, not installed)" in options


def test_few_shot_needs_examples_and_saves_them(open_page, ui_profile: Path) -> None:
    at = open_page("settings")
    at.get("button_group")[0].set_value("few-shot")  # the prompt mode control
    save(at)
    assert any("prompt.examples" in str(e.value) for e in at.error)
    assert load_profile(ui_profile).prompt.mode == "zero-shot"  # nothing written

    ui_profile.write_text(ui_profile.read_text() + '''
[prompt]
mode = "one-shot"

[[prompt.examples]]
question = "Who signs off travel?"
context = "Travel is signed off by the team lead."
answer = "The team lead [1]."
''', encoding="utf-8")
    at = open_page("settings")
    at.get("button_group")[0].set_value("few-shot")
    by_label(at.text_area, "System instructions").input("Answer briefly.")
    save(at)
    assert any("prompt.examples" in str(e.value) for e in at.error)  # still only one example
    at.get("button_group")[0].set_value("one-shot")
    save(at)
    p = load_profile(ui_profile)
    assert p.prompt.mode == "one-shot" and p.prompt.system == "Answer briefly."
    assert p.prompt.examples[0].answer == "The team lead [1]."


def test_switching_profiles_per_session(open_page, ui_profile: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.toml"
    other.write_text('[chat]\nmodel = "smollm2-135m"\n\n[store]\npath = "other-data"\n',
                     encoding="utf-8")
    at = open_page("settings")
    by_label(at.selectbox, "Profile in use").set_value(str(other)).run()
    assert by_label(at.selectbox, "Chat model").value == "smollm2-135m"
    assert "other.toml" in texts(at)
    fresh = open_page("settings")  # another tab keeps the default profile
    assert by_label(fresh.selectbox, "Chat model").value == "qwen2.5-coder-0.5b"
