"""The Chat page: streamed answers with sources, history, feedback, limits and readiness."""

from __future__ import annotations

from pathlib import Path

import pytest

from appkit.config import load_profile
from appkit.feedback import FeedbackStore
from tests.ui.conftest import texts
from ui.chat import MAX_QUESTION_CHARS
from ui.conversations import ConversationStore


def ask(at, question: str):
    at.chat_input[0].set_value(question).run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def data_dir(profile_path: Path) -> Path:
    return load_profile(profile_path).data_dir


def test_empty_collection_says_what_to_do(open_page) -> None:
    at = open_page("chat")
    assert "No documents yet" in texts(at)
    assert not at.chat_input[0].disabled  # the chat still answers, saying nothing was found


def test_answer_cites_the_document_and_is_saved(open_page, ingested, ui_profile) -> None:
    at = ask(open_page("chat"), "Who approves hotel bookings?")
    page = texts(at)
    assert "Maria Lopez" in page and ":blue-badge[1]" in page
    assert "**Sources:** [1] handbook.md > Handbook > Travel" in page
    assert len(at.get("feedback")) == 1
    saved = ConversationStore.for_data_dir(data_dir(ui_profile))
    [summary] = saved.list()
    turn = saved.load(summary["id"]).turns[0]
    assert summary["title"] == "Who approves hotel bookings?"
    assert turn.contexts[0]["text"].count("Maria Lopez") == 1
    assert turn.messages[0]["role"] == "system" and "Maria Lopez" in turn.messages[-1]["content"]
    assert turn.settings["chat_model"] and turn.settings["generation"]["max_tokens"] > 0


def test_follow_up_keeps_the_history_and_reloads(open_page, ingested, ui_profile) -> None:
    at = ask(open_page("chat"), "Who approves hotel bookings?")
    ask(at, "And how often are laptops replaced?")
    assert len([m for m in at.chat_message if m.name == "user"]) == 2
    # A new browser session starts empty and can reopen the conversation from the sidebar.
    other = open_page("chat")
    assert not other.chat_message
    [button] = [b for b in other.sidebar.button if b.label == "Who approves hotel bookings?"]
    button.click().run()
    assert len([m for m in other.chat_message if m.name == "user"]) == 2
    assert "Maria Lopez" in texts(other)


def test_rating_and_correction_are_stored(open_page, ingested, ui_profile) -> None:
    at = ask(open_page("chat"), "Who approves hotel bookings?")
    at.get("feedback")[0].set_value(0).run()  # thumbs down
    store = FeedbackStore.for_data_dir(data_dir(ui_profile))
    [record] = store.all()
    assert record.rating == -1 and record.question == "Who approves hotel bookings?"
    assert "Maria Lopez" in record.contexts[0]["text"] and record.messages
    at.text_area[0].input("Maria Lopez in finance approves them [1].")
    [save] = [b for b in at.button if b.label == "Save correction"]
    save.click().run()
    [record] = store.all()
    assert record.rating == -1 and record.correction == "Maria Lopez in finance approves them [1]."
    assert record.settings["prompt_mode"] == "zero-shot"


def test_a_very_long_question_is_truncated_with_a_notice(open_page, ingested) -> None:
    at = ask(open_page("chat"), "hotel bookings " * 1000)
    assert any("only the first" in str(w.value) for w in at.warning)
    sent = at.chat_message[0].markdown[0].value.replace("\\", "")
    assert len(sent) <= MAX_QUESTION_CHARS
    ask(at, "And laptops?")  # the history still shows that it was shortened
    assert "shortened to fit the model" in texts(at)


def test_two_sessions_do_not_mix_histories(open_page, ingested) -> None:
    first, second = open_page("chat"), open_page("chat")
    ask(first, "Who approves hotel bookings?")
    ask(second, "How often are laptops replaced?")
    ask(first, "Anything else about travel?")
    first_questions = [m.markdown[0].value for m in first.chat_message if m.name == "user"]
    second_questions = [m.markdown[0].value for m in second.chat_message if m.name == "user"]
    assert first_questions == ["Who approves hotel bookings?", "Anything else about travel?"]
    assert second_questions == ["How often are laptops replaced?"]


def test_stopping_keeps_the_partial_answer(open_page, ingested, monkeypatch) -> None:
    from streamlit.runtime.scriptrunner_utils.exceptions import StopException

    from ui.testing import ExtractiveChatModel

    original = ExtractiveChatModel._stream

    def stopped_midway(self, *args, **kwargs):
        for i, chunk in enumerate(original(self, *args, **kwargs)):
            if i == 3:
                raise StopException()  # what Streamlit raises when the user presses Stop
            yield chunk

    monkeypatch.setattr(ExtractiveChatModel, "_stream", stopped_midway)
    at = open_page("chat")
    at.chat_input[0].set_value("Who approves hotel bookings?").run()
    monkeypatch.setattr(ExtractiveChatModel, "_stream", original)
    at.run()
    page = texts(at)
    assert "Stopped before the answer was finished" in page
    assert "Hotel bookings above" in page and "Maria Lopez" not in page


def test_a_missing_model_is_reported_and_blocks_the_chat(open_page, ui_profile, monkeypatch
                                                          ) -> None:
    ui_profile.write_text('[chat]\nmodel = "no-such-model"\n\n[store]\npath = "data"\n',
                          encoding="utf-8")
    monkeypatch.delenv("APPKIT_UI_APP_FACTORY")
    at = open_page("chat")
    assert any("no-such-model" in str(e.value) for e in at.error)
    assert at.chat_input[0].disabled


def test_a_broken_profile_is_reported(open_page, ui_profile) -> None:
    ui_profile.write_text("[retrieval]\nk = 0\n", encoding="utf-8")
    at = open_page("chat")
    assert any("retrieval.k" in str(e.value) for e in at.error)


@pytest.mark.parametrize("question", ["What is the meaning of life?"])
def test_nothing_found_says_so(open_page, ui_profile, question) -> None:
    ui_profile.write_text('[retrieval]\nmin_relevance = 0.99\n\n[store]\npath = "data"\n',
                          encoding="utf-8")
    at = ask(open_page("chat"), question)
    assert "could not find anything" in texts(at)
