from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, SystemMessage, ToolMessage

from appkit.config import ChatConfig, GenerationConfig, Profile
from appkit.models import make_chat_model
from appkit.models.llama_cpp import (
    LlamaCppChatModel,
    _to_openai,
    default_threads,
    load_llama,
    render_completion_prompt,
)

# --- without a model file -------------------------------------------------------------------


def test_construction_loads_nothing() -> None:
    llm = LlamaCppChatModel(model_path="/nowhere/model.gguf", max_tokens=32, stop=["\n"])
    assert llm.max_tokens == 32 and llm._llm_type == "appkit-llama-cpp"
    assert llm._identifying_params["model_name"] == "model.gguf"


def test_make_chat_model_takes_the_profile_settings() -> None:
    profile = Profile(chat=ChatConfig(
        model="smollm2-135m", n_ctx=1024, n_threads=1,
        generation=GenerationConfig(max_tokens=16, temperature=0.0, stop=("END",), seed=7),
    ))
    llm = make_chat_model(profile, top_k=5)
    assert isinstance(llm, LlamaCppChatModel)
    assert (llm.model_name, llm.n_ctx, llm.n_threads) == ("smollm2-135m", 1024, 1)
    assert (llm.max_tokens, llm.temperature, llm.stop, llm.seed, llm.top_k) == (
        16, 0.0, ["END"], 7, 5)
    assert llm.model_path.endswith(".gguf")


def test_call_parameters_merge_stops_and_overrides() -> None:
    llm = LlamaCppChatModel(model_path="m.gguf", stop=["A"], max_tokens=10)
    params = llm._params(["B"], {"stop": ["C"], "max_tokens": 3, "grammar": None})
    assert params["stop"] == ["A", "B", "C"] and params["max_tokens"] == 3
    assert params["grammar"] is None
    assert "stop" not in LlamaCppChatModel(model_path="m.gguf")._params(None, {})


def test_a_json_schema_response_format_becomes_the_strict_grammar() -> None:
    pytest.importorskip("llama_cpp")
    from appkit.models.llama_cpp import _JSON_CHAR

    llm = LlamaCppChatModel(model_path="m.gguf")
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    params = llm._params(None, {"response_format": {"type": "json_object", "schema": schema}})
    assert "response_format" not in params and _JSON_CHAR in params["grammar"]._grammar
    plain = llm._params(None, {"response_format": {"type": "json_object"}})
    assert plain["response_format"] == {"type": "json_object"} and "grammar" not in plain


def test_messages_to_openai_roles() -> None:
    assert _to_openai(SystemMessage("s")) == {"role": "system", "content": "s"}
    assert _to_openai(HumanMessage("h")) == {"role": "user", "content": "h"}
    assert _to_openai(AIMessage("a")) == {"role": "assistant", "content": "a"}
    assert _to_openai(ToolMessage("42", tool_call_id="t1")) == {
        "role": "tool", "content": "42", "tool_call_id": "t1"}


def test_completion_prompt_for_base_models() -> None:
    prompt = render_completion_prompt([SystemMessage("Use the sources."), HumanMessage("Q1"),
                                       AIMessage("A1"), HumanMessage("Q2")])
    assert prompt == "Use the sources.\n\nQ1\n\nAnswer: A1\n\nQ2\nAnswer:"


def test_default_threads() -> None:
    assert 1 <= default_threads()


def test_standard_params() -> None:
    params = LlamaCppChatModel(model_path="/m/x.gguf", model_name="x")._get_ls_params()
    assert params["ls_provider"] == "llama_cpp" and params["ls_model_name"] == "x"


# --- with the packaged models -----------------------------------------------------------------


@pytest.fixture(scope="module")
def smollm(smollm_path: str) -> LlamaCppChatModel:
    # One thread: on a busy 2-core machine llama.cpp's spinning worker threads slow a
    # two-thread run down twenty-fold, and a 135M model does not need more.
    llm = LlamaCppChatModel(model_path=smollm_path, model_name="smollm2-135m", n_ctx=1024,
                            n_threads=1, max_tokens=24, temperature=0.0)
    llm.warm_up()
    return llm


@pytest.mark.slow
def test_invoke(smollm: LlamaCppChatModel) -> None:
    reply = smollm.invoke("What is the capital of France? Answer in one word.")
    assert isinstance(reply, AIMessage) and "Paris" in reply.text
    usage = reply.usage_metadata
    assert usage["input_tokens"] > 5 and 0 < usage["output_tokens"] <= 24
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    meta = reply.response_metadata
    assert meta["model_name"] == "smollm2-135m" and meta["finish_reason"] in ("stop", "length")
    assert meta["time_to_first_token_s"] >= 0 and meta["generation_s"] >= 0


@pytest.mark.slow
def test_stream(smollm: LlamaCppChatModel) -> None:
    chunks = list(smollm.stream("Name three colours."))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    texts = [c.text for c in chunks if c.text]
    assert len(texts) > 2 and "".join(texts).strip()
    [last] = [c for c in chunks if c.usage_metadata]
    assert last.usage_metadata["output_tokens"] == len(texts)
    assert last.response_metadata["model_name"] == "smollm2-135m"


@pytest.mark.slow
def test_stop_strings(smollm: LlamaCppChatModel) -> None:
    prompt = "Count from 1 to 10, separated by commas. Only the numbers."
    full = smollm.invoke(prompt, max_tokens=40).text
    assert "4" in full, f"the model did not count: {full!r}"
    stopped = smollm.invoke(prompt, stop=["4"], max_tokens=40)
    assert "4" not in stopped.text and full.startswith(stopped.text)
    assert stopped.response_metadata["finish_reason"] == "stop"
    bound = smollm.model_copy(update={"stop": ["4"]})
    assert "4" not in bound.invoke(prompt, max_tokens=40).text


@pytest.mark.slow
def test_max_tokens_per_call(smollm: LlamaCppChatModel) -> None:
    reply = smollm.invoke("Write a long story about a lighthouse.", max_tokens=5)
    assert reply.usage_metadata["output_tokens"] <= 5
    assert reply.response_metadata["finish_reason"] == "length"


@pytest.mark.slow
def test_temperature_zero_is_deterministic(smollm: LlamaCppChatModel) -> None:
    assert smollm.invoke("Say something about cats.").text == smollm.invoke(
        "Say something about cats.").text


@pytest.mark.slow
def test_instances_share_one_loaded_model(smollm: LlamaCppChatModel) -> None:
    twin = LlamaCppChatModel(model_path=smollm.model_path, n_ctx=1024, n_threads=1, max_tokens=4)
    assert twin.warm_up() is smollm.warm_up()
    assert load_llama(smollm.model_path, 1024, 1) is smollm.warm_up()


@pytest.mark.slow
def test_concurrent_calls_are_serialised(smollm: LlamaCppChatModel) -> None:
    loaded = smollm.warm_up()
    inside, overlap = [0], []
    guard = threading.Lock()
    original = loaded.llama.create_chat_completion

    def tracking(*args, **kwargs):
        with guard:
            inside[0] += 1
            overlap.append(inside[0])
        try:
            yield from original(*args, **kwargs)
        finally:
            with guard:
                inside[0] -= 1

    loaded.llama.create_chat_completion = tracking
    try:
        questions = ["Name a fruit.", "Name an animal.", "Name a city.", "Name a colour."]
        with ThreadPoolExecutor(max_workers=2) as pool:
            replies = list(pool.map(lambda q: smollm.invoke(q, max_tokens=8), questions))
    finally:
        del loaded.llama.create_chat_completion
    assert all(isinstance(r, AIMessage) and r.text for r in replies)
    assert max(overlap) == 1, "two threads were inside llama.cpp at once"


@pytest.mark.slow
def test_token_counting_uses_the_model_tokenizer(smollm: LlamaCppChatModel) -> None:
    n = smollm.get_num_tokens("The quick brown fox jumps over the lazy dog.")
    assert 8 <= n <= 14


@pytest.mark.slow
def test_a_base_model_gets_a_completion_prompt() -> None:
    profile = Profile(chat=ChatConfig(n_ctx=512, n_threads=1))
    llm = make_chat_model(profile, model="gemma3-270m", max_tokens=16, temperature=0.0)
    loaded = llm.warm_up()
    assert loaded.has_chat_template is False
    reply = llm.invoke([SystemMessage("Complete the sentence."),
                        HumanMessage("The capital of France is")])
    assert reply.text.strip(), "the completion path produced no text"
    assert "\n\n" not in reply.text, "generation stops at a blank line"
    assert reply.usage_metadata["output_tokens"] > 0
    chunks = [c.text for c in llm.stream("The first month of the year is") if c.text]
    assert chunks
