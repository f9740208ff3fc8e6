"""Generation overhead: the same prompt through appkit's RAG chain vs raw llama-cpp-python.

Both sides use the same loaded ``llama_cpp.Llama`` (the default Qwen2.5-Coder-0.5B Q4_K_M), the same
messages and the same settings (greedy, fixed seed, max tokens), streamed. The chain's side goes
through ``RagChain.stream`` (retrieval from a fixed in-memory retriever, prompt building, token budget,
LangChain callbacks, citation parsing); the raw side calls ``create_chat_completion(stream=True)``
with the messages the chain built. Runs alternate A/B to share the machine's noise.

Usage:
    .venv/bin/python benchmarks/bench_generation.py [--rounds 5] [--max-tokens 128]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever

PASSAGES = [
    "The Falcon sensor measures air quality every 30 seconds and stores readings for 90 days. "
    "Its battery lasts 14 months and it charges over USB-C in about two hours.",
    "In the June finance meeting we decided to cap the Q3 marketing budget at 40,000 euros and to "
    "move 10,000 euros to hiring a second support engineer.",
    "Employees may book economy class for flights under six hours. Business class needs approval "
    "from the CFO. Hotel costs are reimbursed up to 150 euros per night in Europe.",
]
QUESTION = "Describe the Falcon sensor: how often it measures, how long it keeps data, and its battery."


class FixedRetriever(BaseRetriever):
    """Returns the same passages for every query."""

    def _get_relevant_documents(self, query: str, *,
                                run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [Document(page_content=t, metadata={"source": f"/docs/note{i}.md", "relevance": 0.9})
                for i, t in enumerate(PASSAGES)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--model", default="qwen2.5-coder-0.5b")
    args = parser.parse_args()

    from appkit.chains.rag import RagChain
    from appkit.config import Profile
    from appkit.models import make_chat_model
    from appkit.models.llama_cpp import _to_openai
    from appkit.types import Answer

    profile = Profile()
    llm = make_chat_model(profile, args.model, max_tokens=args.max_tokens, temperature=0.0)
    chain = RagChain.from_profile(profile, FixedRetriever(), llm)
    chain.max_tokens = args.max_tokens
    messages, _ = chain.build(QUESTION, FixedRetriever().invoke(QUESTION))
    raw_messages = [_to_openai(m) for m in messages]
    llama = llm.llama
    params = dict(max_tokens=args.max_tokens, temperature=0.0, top_k=llm.top_k, top_p=llm.top_p,
                  repeat_penalty=llm.repeat_penalty, seed=llm.seed)

    def run_chain() -> tuple[float, int, float]:
        t0 = time.perf_counter()
        first = None
        answer = None
        for item in chain.stream(QUESTION):
            if isinstance(item, Answer):
                answer = item
            elif first is None:
                first = time.perf_counter()
        end = time.perf_counter()
        return end - t0, answer.usage.get("output_tokens", 0), (first or end) - t0

    def run_raw() -> tuple[float, int, float]:
        t0 = time.perf_counter()
        first = None
        n = 0
        for chunk in llama.create_chat_completion(messages=raw_messages, stream=True, **params):
            if chunk["choices"][0]["delta"].get("content"):
                n += 1
                first = first or time.perf_counter()
        end = time.perf_counter()
        return end - t0, n, (first or end) - t0

    run_raw()  # warm-up: loads the model and fills the prompt cache for both sides
    run_chain()
    chain_rates, raw_rates, chain_ttft, raw_ttft = [], [], [], []
    tokens_seen: dict[str, set[int]] = {"raw": set(), "chain": set()}
    for _ in range(args.rounds):
        for name, fn in (("raw", run_raw), ("chain", run_chain)):
            secs, tokens, ttft = fn()
            tokens_seen[name].add(tokens)
            (raw_rates if name == "raw" else chain_rates).append(tokens / secs)
            (raw_ttft if name == "raw" else chain_ttft).append(ttft)
    c, r = statistics.median(chain_rates), statistics.median(raw_rates)
    print(f"model {args.model}, {args.rounds} rounds, max_tokens {args.max_tokens}, greedy")
    print(f"raw llama-cpp create_chat_completion: {r:.1f} tokens/s (median), "
          f"first token {statistics.median(raw_ttft) * 1000:.0f} ms")
    print(f"appkit RagChain.stream:               {c:.1f} tokens/s (median), "
          f"first token {statistics.median(chain_ttft) * 1000:.0f} ms")
    print(f"tokens generated per run: raw {sorted(tokens_seen['raw'])}, "
          f"chain {sorted(tokens_seen['chain'])}")
    print(f"ratio chain/raw tokens/s: {c / r:.3f} (target >= 0.97)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
