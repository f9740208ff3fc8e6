from __future__ import annotations

import pytest
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_core.retrievers import BaseRetriever

from appkit.chains.prompts import CONDENSE_SYSTEM
from appkit.chains.rag import NOT_FOUND, RagChain, cited_numbers
from appkit.config import Profile, PromptConfig, RetrievalConfig, ShotExample
from appkit.testing import FakeChatModel
from appkit.types import Answer, Citation


class ListRetriever(BaseRetriever):
    """Returns fixed documents and records the queries it was asked."""

    docs: list[Document]
    queries: list[str] = []

    def _get_relevant_documents(self, query: str, *,
                                run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        self.queries.append(query)
        return list(self.docs)


def chunk(i: int, text: str, relevance: float = 0.8, **meta) -> Document:
    return Document(id=f"id{i}", page_content=text,
                    metadata={"source": f"/docs/file{i}.md", "relevance": relevance, **meta})


DOCS = [
    chunk(1, "The Q3 marketing budget is capped at EUR 48,000.", 0.9, heading="Decisions"),
    chunk(2, "Hotels are reimbursed up to EUR 135 per night.", 0.6, page=2),
    chunk(3, "Support hours are 08:00 to 17:00 CET.", 0.4),
]


def make_chain(llm: FakeChatModel, docs=DOCS, **kwargs) -> tuple[RagChain, ListRetriever]:
    retriever = ListRetriever(docs=docs, queries=[])
    return RagChain(retriever, llm, **kwargs), retriever


def test_citations_are_exactly_the_chunks_given(fake_llm: FakeChatModel) -> None:
    fake_llm.replies = ["It is EUR 48,000 [1]."]
    chain, _ = make_chain(fake_llm)
    answer = chain.invoke("What is the Q3 budget?")

    assert answer.found and answer.text == "It is EUR 48,000 [1]."
    assert [c.chunk_id for c in answer.citations] == ["id1", "id2", "id3"]
    assert [c.index for c in answer.citations] == [1, 2, 3]
    assert answer.citations[0] == Citation(
        index=1, source="/docs/file1.md", page=None, heading="Decisions",
        snippet="The Q3 marketing budget is capped at EUR 48,000.", chunk_id="id1",
        relevance=0.9, cited=True,
    )
    assert answer.citations[1].page == 2 and answer.citations[1].label == "file2.md:2"
    [messages] = fake_llm.calls
    prompt = messages[-1].text
    for c, d in zip(answer.citations, DOCS):
        assert f"[{c.index}] (" in prompt and d.page_content in prompt


def test_cited_flags_follow_the_numbers_in_the_answer(fake_llm: FakeChatModel) -> None:
    fake_llm.replies = ["Hotels: EUR 135 [2]; hours [3]. Nothing from [9]."]
    answer = make_chain(fake_llm)[0].invoke("q")
    assert [c.cited for c in answer.citations] == [False, True, True]
    assert [c.index for c in answer.cited] == [2, 3]


def test_an_answer_without_numbers_cites_nothing(fake_llm: FakeChatModel) -> None:
    fake_llm.replies = ["EUR 48,000."]
    answer = make_chain(fake_llm)[0].invoke("q")
    assert answer.cited == () and len(answer.citations) == 3


def test_cited_numbers() -> None:
    assert cited_numbers("a [1], b [12] and [1]; not [x] or [1234]") == {1, 12}


def test_nothing_relevant_does_not_call_the_model(fake_llm: FakeChatModel) -> None:
    chain, retriever = make_chain(fake_llm, min_relevance=0.95)
    pieces = list(chain.stream("What is the weather on Mars?"))
    answer = pieces[-1]
    assert pieces[:-1] == [NOT_FOUND]
    assert isinstance(answer, Answer)
    assert answer.found is False and answer.text == NOT_FOUND and answer.citations == ()
    assert fake_llm.calls == [], "the model is not asked when no source is relevant"
    assert retriever.queries == ["What is the weather on Mars?"]


def test_an_empty_store_answers_not_found(fake_llm: FakeChatModel) -> None:
    answer = make_chain(fake_llm, docs=[])[0].invoke("q")
    assert not answer.found and fake_llm.calls == []


def test_irrelevant_chunks_are_dropped_before_prompting(fake_llm: FakeChatModel) -> None:
    answer = make_chain(fake_llm, min_relevance=0.5)[0].invoke("q")
    assert [c.chunk_id for c in answer.citations] == ["id1", "id2"]
    assert DOCS[2].page_content not in fake_llm.calls[0][-1].text


def test_follow_ups_are_condensed_first(fake_llm: FakeChatModel) -> None:
    fake_llm.replies = ['"What is the Q3 marketing budget?"\nextra line', "EUR 48,000 [1]."]
    chain, retriever = make_chain(fake_llm)
    history = [("Who owns the budget?", "Priya Raman [1].")]
    answer = chain.invoke("And how much is it?", history)

    condense, final = fake_llm.calls
    assert isinstance(condense[0], SystemMessage) and condense[0].text == CONDENSE_SYSTEM
    assert "And how much is it?" in condense[-1].text and "Priya Raman" in condense[-1].text
    assert retriever.queries == ["What is the Q3 marketing budget?"]
    assert answer.standalone_question == "What is the Q3 marketing budget?"
    assert answer.question == "And how much is it?"
    assert [m.text for m in final[1:3]] == ["Who owns the budget?", "Priya Raman [1]."]
    assert "Question: What is the Q3 marketing budget?" in final[-1].text


def test_an_empty_condensed_question_falls_back_to_the_original(fake_llm: FakeChatModel) -> None:
    fake_llm.replies = ["  ", "ok"]
    chain, retriever = make_chain(fake_llm)
    chain.invoke("And the hotels?", [("q", "a")])
    assert retriever.queries == ["And the hotels?"]


def test_no_history_or_condense_off_means_one_model_call(fake_llm: FakeChatModel) -> None:
    chain, retriever = make_chain(fake_llm)
    chain.invoke("First question")
    assert len(fake_llm.calls) == 1
    chain, retriever = make_chain(FakeChatModel(), condense=False)
    chain.invoke("And then?", [("q", "a")])
    assert len(chain.llm.calls) == 1 and retriever.queries == ["And then?"]


def test_the_token_budget_drops_chunks_that_do_not_fit(fake_llm: FakeChatModel) -> None:
    big = chunk(9, "word " * 600, 0.85)  # about 750 tokens for the fake's len/4 counter
    docs = [DOCS[0], big, DOCS[1]]
    chain, _ = make_chain(fake_llm, docs=docs, n_ctx=600, max_tokens=200)
    answer = chain.invoke("q")
    assert [c.chunk_id for c in answer.citations] == ["id1", "id2"], "renumbered without the big one"
    assert [c.index for c in answer.citations] == [1, 2]
    prompt = fake_llm.calls[0][-1].text
    assert "word word" not in prompt and "[2] (file2.md, page 2)" in prompt


def test_a_bigger_answer_reservation_leaves_room_for_fewer_chunks(fake_llm: FakeChatModel) -> None:
    wide = make_chain(FakeChatModel(), n_ctx=400, max_tokens=100)[0].invoke("q")
    narrow = make_chain(FakeChatModel(), n_ctx=400, max_tokens=290)[0].invoke("q")
    assert len(narrow.citations) < len(wide.citations) == 3


@pytest.mark.parametrize(("mode", "shots"), [("zero-shot", 0), ("one-shot", 1), ("few-shot", 2)])
def test_worked_examples_appear_in_the_messages(fake_llm: FakeChatModel, mode: str,
                                                shots: int) -> None:
    examples = (ShotExample("Who signs?", "The director [1].", "The director signs."),
                ShotExample("Logo colour?", "The documents do not say."))
    prompt = PromptConfig(mode=mode, examples=examples)
    make_chain(fake_llm, prompt=prompt)[0].invoke("What is the Q3 budget?")
    [messages] = fake_llm.calls
    assert isinstance(messages[0], SystemMessage)
    assert [m.text for m in messages if isinstance(m, AIMessage)] == [
        e.answer for e in examples[:shots]]
    humans = [m for m in messages if isinstance(m, HumanMessage)]
    assert len(humans) == shots + 1
    if shots:
        assert "Who signs?" in humans[0].text and "The director signs." in humans[0].text


def test_stream_yields_text_then_the_answer(fake_llm: FakeChatModel) -> None:
    fake_llm.replies = ["The budget is EUR 48,000 [1]."]
    items = list(make_chain(fake_llm)[0].stream("q"))
    *pieces, answer = items
    assert len(pieces) > 1 and all(isinstance(p, str) for p in pieces)
    assert "".join(pieces).strip() == answer.text
    assert set(answer.timings) >= {"condense", "retrieve", "first_token", "generate"}


def test_from_profile_takes_the_profile_settings(fake_llm: FakeChatModel) -> None:
    profile = Profile(retrieval=RetrievalConfig(min_relevance=0.7, condense_history=False))
    chain = RagChain.from_profile(profile, ListRetriever(docs=DOCS, queries=[]), fake_llm)
    assert (chain.min_relevance, chain.condense, chain.n_ctx, chain.max_tokens) == (
        0.7, False, profile.chat.n_ctx, profile.chat.generation.max_tokens)
    assert chain.prompt == profile.prompt


def test_as_runnable(fake_llm: FakeChatModel) -> None:
    fake_llm.replies = ["EUR 48,000 [1]."]
    runnable = make_chain(fake_llm)[0].as_runnable()
    answer = runnable.invoke({"question": "What is the Q3 budget?"})
    assert answer.text == "EUR 48,000 [1]." and answer.cited[0].chunk_id == "id1"


def test_answer_to_dict_carries_labels(fake_llm: FakeChatModel) -> None:
    fake_llm.replies = ["[2]"]
    data = make_chain(fake_llm)[0].invoke("q").to_dict()
    assert [c["label"] for c in data["citations"]] == [
        "file1.md > Decisions", "file2.md:2", "file3.md"]
    assert [c["cited"] for c in data["citations"]] == [False, True, False]
