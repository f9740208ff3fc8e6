"""Best-of-n in the RAG chain: n sampled answers, the reward model's favourite returned."""

from __future__ import annotations

import dataclasses

import pytest

from appkit.chains.rag import RagChain
from appkit.config import ChatConfig, Profile
from appkit.errors import ModelNotAvailableError
from appkit.models.reward import reward_prompt
from appkit.testing import FakeChatModel, FakeRewardModel
from appkit.types import Answer
from tests.chains.test_rag import DOCS, ListRetriever


def _cites_first_source(prompt: str, answer: str) -> float:
    return 2.0 * ("[1]" in answer) - 0.01 * len(answer)


def test_best_of_n_returns_the_highest_scored_candidate() -> None:
    llm = FakeChatModel(replies=["No idea.", "EUR 48,000 [1].", "Maybe EUR 50,000 [1] or so.",
                                 "Budget unknown [2]."])
    reward = FakeRewardModel(_cites_first_source)
    chain = RagChain(ListRetriever(docs=DOCS, queries=[]), llm, best_of=4, reward=reward)
    items = list(chain.stream("What is the Q3 budget?"))
    answer = items[-1]
    assert isinstance(answer, Answer) and items[:-1] == ["EUR 48,000 [1]."]
    assert answer.text == "EUR 48,000 [1]." and [c.index for c in answer.cited] == [1]
    assert len(llm.calls) == 4
    prompt = reward_prompt("What is the Q3 budget?", [d.page_content for d in DOCS])
    assert reward.calls == [(prompt, t) for t in ("No idea.", "EUR 48,000 [1].",
                                                  "Maybe EUR 50,000 [1] or so.",
                                                  "Budget unknown [2].")]
    t = answer.timings
    assert t["best_of"] == 4.0 and t["reward"] >= 0 and 0 <= t["best_of_extra"] <= t["generate"]


def test_best_of_one_streams_as_before() -> None:
    llm = FakeChatModel(replies=["EUR 48,000 [1]."])
    chain = RagChain(ListRetriever(docs=DOCS, queries=[]), llm)
    items = list(chain.stream("q"))
    assert len(items) > 2 and "best_of" not in items[-1].timings and len(llm.calls) == 1


def test_nothing_relevant_calls_neither_model() -> None:
    llm, reward = FakeChatModel(), FakeRewardModel()
    chain = RagChain(ListRetriever(docs=[], queries=[]), llm, best_of=3, reward=reward)
    assert not chain.invoke("q").found and llm.calls == [] and reward.calls == []


def test_best_of_needs_a_reward_model() -> None:
    with pytest.raises(ValueError, match="reward model"):
        RagChain(ListRetriever(docs=DOCS, queries=[]), FakeChatModel(), best_of=2)


def test_from_profile_names_the_reward_model_without_loading_it(tmp_path) -> None:
    folder = tmp_path / "rm"
    folder.mkdir()
    profile = dataclasses.replace(Profile(), chat=ChatConfig(best_of=3, reward_model=str(folder)))
    chain = RagChain.from_profile(profile, ListRetriever(docs=DOCS, queries=[]), FakeChatModel())
    assert chain.best_of == 3 and chain.reward.path == folder and chain.reward._loaded is None
    with pytest.raises(ModelNotAvailableError, match="no config.json"):
        chain.invoke("q")
    fake = FakeRewardModel()
    chain = RagChain.from_profile(profile, ListRetriever(docs=DOCS, queries=[]),
                                  FakeChatModel(replies=["a", "bb [1]", "c"]), reward=fake)
    assert chain.invoke("q").text == "bb [1]"
