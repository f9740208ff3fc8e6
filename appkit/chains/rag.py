"""``RagChain``: condense → retrieve → build prompt → generate → answer with citations.

Every step is a LangChain runnable (the retriever and the chat model are used as they are), so
callbacks and tracing see each one. Streaming yields the answer's text as it is generated and then
the finished :class:`~appkit.types.Answer`, whose citations are exactly the chunks given to the model.
When no retrieved chunk is relevant enough the model is not called and the answer says so.

Best-of-n (``chat.best_of`` with a ``chat.reward_model``): n answers are sampled with different
seeds, a reward model scores each against the same sources and question
(:func:`appkit.models.reward.reward_prompt`), and the highest-scored one is returned whole (it is not
streamed token by token). ``Answer.timings`` then holds ``reward`` (scoring seconds),
``best_of`` (n) and ``best_of_extra`` (seconds beyond what one answer took), so the latency cost
is visible in ``appkit ask --json``, the API and the UI.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.documents import Document
from langchain_core.language_models import BaseChatModel
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig, RunnableLambda

from appkit.chains.prompts import answer_messages, condense_messages, fit_sources
from appkit.config import Profile, PromptConfig
from appkit.models.reward import RewardModel
from appkit.types import Answer, Citation

NOT_FOUND = "I could not find anything about this in your documents."
_CITE = re.compile(r"\[(\d{1,3})\]")
_RESERVED_TOKENS = 48  # chat-template markup around the messages


def cited_numbers(text: str) -> set[int]:
    """The ``[n]`` references in an answer."""
    return {int(m) for m in _CITE.findall(text)}


class RagChain:
    """Grounded question answering over a retriever and a chat model.

    Example:
        >>> from appkit.chains.rag import RagChain
        >>> from appkit.testing import FakeChatModel
        >>> from langchain_core.retrievers import BaseRetriever
        >>> chain = RagChain(retriever=my_retriever, llm=FakeChatModel(replies=["40k [1]"]))  # doctest: +SKIP
        >>> chain.invoke("What is the Q3 budget?").text  # doctest: +SKIP
        '40k [1]'

    Args:
        retriever: any LangChain retriever; ``metadata["relevance"]`` is used when present.
        llm: any LangChain chat model.
        prompt: system text, template, mode and examples.
        n_ctx: the model's context length, for the token budget.
        max_tokens: tokens reserved for the answer.
        min_relevance: chunks below this relevance are dropped before prompting.
        condense: rewrite follow-ups into standalone questions using the history.
        best_of: answers sampled per question; above 1 the one ``reward`` scores highest wins.
        reward: a reward model (:class:`appkit.models.reward.RewardModel`), needed for best_of > 1.
        best_of_temperature: the lowest sampling temperature of the n answers.
        seed: the first sample's seed (sample i uses seed + i).
    """

    def __init__(self, retriever: BaseRetriever, llm: BaseChatModel,
                 prompt: PromptConfig | None = None, *, n_ctx: int = 4096, max_tokens: int = 256,
                 min_relevance: float = 0.0, condense: bool = True, best_of: int = 1,
                 reward: RewardModel | None = None, best_of_temperature: float = 0.7,
                 temperature: float = 0.0, seed: int = 0):
        self.retriever = retriever
        self.llm = llm
        self.prompt = prompt or PromptConfig()
        self.n_ctx = n_ctx
        self.max_tokens = max_tokens
        self.min_relevance = min_relevance
        self.condense = condense
        if best_of > 1 and reward is None:
            raise ValueError("best_of > 1 needs a reward model")
        self.best_of = best_of
        self.reward = reward
        self.best_of_temperature = max(best_of_temperature, temperature)
        self.seed = seed

    @classmethod
    def from_profile(cls, profile: Profile, retriever: BaseRetriever, llm: BaseChatModel,
                     reward: RewardModel | None = None) -> RagChain:
        """Build the chain with the profile's prompt, context, retrieval and best-of-n settings.

        The reward model is named here but loaded on the first best-of-n answer.
        """
        chat = profile.chat
        if chat.best_of > 1 and reward is None:
            from appkit.models.reward import load_reward_model

            reward = load_reward_model(chat.reward_model)
        return cls(
            retriever, llm, profile.prompt, n_ctx=chat.n_ctx,
            max_tokens=chat.generation.max_tokens,
            min_relevance=profile.retrieval.min_relevance,
            condense=profile.retrieval.condense_history,
            best_of=chat.best_of, reward=reward, best_of_temperature=chat.best_of_temperature,
            temperature=chat.generation.temperature, seed=chat.generation.seed,
        )

    # --- steps -------------------------------------------------------------------------------

    def count_tokens(self, text: str) -> int:
        try:
            return int(self.llm.get_num_tokens(text))
        except Exception:  # noqa: BLE001 - models without a local tokenizer
            return max(1, len(text) // 4)

    def standalone_question(self, question: str, history: Sequence[tuple[str, str]],
                            config: RunnableConfig | None = None) -> str:
        """The question rewritten to stand alone (unchanged without history)."""
        if not history or not self.condense:
            return question
        reply = self.llm.invoke(condense_messages(question, history), config,
                                max_tokens=64, temperature=0.0)
        lines = reply.text.strip().splitlines()
        first = lines[0].strip().strip('"').strip() if lines else ""
        return first or question

    def relevant(self, docs: Sequence[Document]) -> list[Document]:
        return [d for d in docs if float(d.metadata.get("relevance", 1.0)) >= self.min_relevance]

    def build(self, question: str, docs: Sequence[Document],
              history: Sequence[tuple[str, str]] = ()) -> tuple[list, list[Document]]:
        """The messages for the model and the chunks that fit the token budget."""
        frame = answer_messages(self.prompt, question, [], history)
        used = sum(self.count_tokens(m.text) for m in frame) + _RESERVED_TOKENS
        budget = self.n_ctx - self.max_tokens - used
        kept = fit_sources(docs, budget, self.count_tokens)
        return answer_messages(self.prompt, question, kept, history), kept

    # --- running -----------------------------------------------------------------------------

    def stream(self, question: str, history: Sequence[tuple[str, str]] = (),
               config: RunnableConfig | None = None) -> Iterator[str | Answer]:
        """Yield the answer's text pieces as they come, then the finished :class:`Answer`."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        standalone = self.standalone_question(question, history, config)
        t1 = time.perf_counter()
        timings["condense"] = t1 - t0
        docs = self.relevant(self.retriever.invoke(standalone, config))
        t2 = time.perf_counter()
        timings["retrieve"] = t2 - t1
        model = str(getattr(self.llm, "model_name", "") or "")
        if not docs:
            yield NOT_FOUND
            yield Answer(question=question, text=NOT_FOUND, standalone_question=standalone,
                         found=False, timings=timings, model=model)
            return
        messages, kept = self.build(standalone, docs, history)
        if self.best_of > 1:
            yield from self._best_of_n(question, standalone, messages, kept, timings, t0, t2,
                                       model, config)
            return
        pieces: list[str] = []
        usage: dict[str, int] = {}
        first: float | None = None
        for chunk in self.llm.stream(messages, config):
            if chunk.usage_metadata:
                usage = {k: int(v) for k, v in chunk.usage_metadata.items() if isinstance(v, int)}
            text = chunk.text
            if text:
                first = first or time.perf_counter()
                pieces.append(text)
                yield text
        end = time.perf_counter()
        timings["first_token"] = (first or end) - t0
        timings["generate"] = end - t2
        yield self._answer(question, "".join(pieces), kept, standalone, usage, timings, model)

    @staticmethod
    def _answer(question: str, text: str, kept: Sequence[Document], standalone: str,
                usage: dict[str, int], timings: dict[str, float], model: str) -> Answer:
        text = text.strip()
        numbers = cited_numbers(text)
        citations = tuple(
            Citation.from_document(i, d, cited=i in numbers) for i, d in enumerate(kept, 1)
        )
        return Answer(question=question, text=text, citations=citations,
                      standalone_question=standalone, usage=usage, timings=timings, model=model)

    def _best_of_n(self, question: str, standalone: str, messages: list, kept: list[Document],
                   timings: dict[str, float], t0: float, t2: float, model: str,
                   config: RunnableConfig | None) -> Iterator[str | Answer]:
        """Sample ``best_of`` answers, score them with the reward model, yield the best one."""
        from appkit.models.reward import reward_prompt

        assert self.reward is not None
        candidates: list[tuple[str, dict[str, int]]] = []
        per_answer: list[float] = []
        for i in range(self.best_of):
            start = time.perf_counter()
            reply = self.llm.invoke(messages, config, temperature=self.best_of_temperature,
                                    seed=self.seed + i)
            per_answer.append(time.perf_counter() - start)
            usage = {k: int(v) for k, v in (reply.usage_metadata or {}).items()
                     if isinstance(v, int)}
            candidates.append((reply.text.strip(), usage))
        t3 = time.perf_counter()
        prompt = reward_prompt(standalone, [d.page_content for d in kept])
        scores = self.reward.score(prompt, [text for text, _ in candidates])
        end = time.perf_counter()
        best = max(range(len(candidates)), key=lambda i: scores[i])
        text, usage = candidates[best]
        total = {k: sum(u.get(k, 0) for _, u in candidates) for k in usage}
        timings["generate"] = t3 - t2
        timings["reward"] = end - t3
        timings["first_token"] = end - t0
        timings["best_of"] = float(self.best_of)
        timings["best_of_extra"] = (end - t2) - per_answer[best]
        yield text
        yield self._answer(question, text, kept, standalone, total or usage, timings, model)

    def invoke(self, question: str, history: Sequence[tuple[str, str]] = (),
               config: RunnableConfig | None = None) -> Answer:
        """Answer a question (the last item of :meth:`stream`)."""
        answer = None
        for item in self.stream(question, history, config):
            if isinstance(item, Answer):
                answer = item
        assert answer is not None
        return answer

    def as_runnable(self) -> Runnable[dict[str, Any], Answer]:
        """The chain as one runnable taking ``{"question": ..., "history": [...]}``."""
        return RunnableLambda(
            lambda x, config=None: self.invoke(x["question"], x.get("history", ()), config),
            name="appkit_rag",
        )
