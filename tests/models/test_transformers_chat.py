"""``TransformersChatModel`` on a tiny random Llama saved with a word-level tokenizer: prompts,
generation settings, stop strings, usage, token counts, a peft adapter on top, and the catalogue
route (``format = "hf"``) through ``make_chat_model``."""

from __future__ import annotations

import pytest
from langchain_core.messages import HumanMessage

from appkit.config import Profile
from appkit.models import make_chat_model
from appkit.models.catalogue import ModelSpec, register_model
from appkit.models.transformers_chat import TransformersChatModel, generate_new_tokens
from tests.helpers import save_tiny_llama

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

WORDS = ["<pad>", "<s>", "</s>", "<unk>", "Sources:", "Question:", "Answer:", "What", "is", "it",
         "the", "sky", "blue", "Paris", "[1]", "?", "."]


def save_tiny_model(folder, *, seed: int = 0):
    """A two-layer random Llama and a word-level tokenizer, saved as a transformers folder."""
    return save_tiny_llama(folder, WORDS, seed=seed)


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny-hf"))


def test_generates_with_usage_and_counts_tokens(tiny_folder):
    llm = TransformersChatModel(model_path=str(tiny_folder), chat_template=False, max_tokens=5,
                                temperature=0.0)
    message = llm.invoke("What is it ?")
    assert isinstance(message.content, str)
    assert message.usage_metadata["output_tokens"] <= 5
    prompt = llm.render([HumanMessage("What is it ?")])
    assert prompt == "What is it ?\nAnswer:"  # the plain completion prompt of base models
    assert message.usage_metadata["input_tokens"] == len(llm.warm_up().tokenizer(prompt).input_ids)
    assert message.response_metadata["finish_reason"] in ("stop", "length")
    assert llm.get_num_tokens("What is the sky") == 4


def test_stop_strings_cut_the_answer(tiny_folder, monkeypatch):
    llm = TransformersChatModel(model_path=str(tiny_folder), chat_template=False, max_tokens=8,
                                temperature=0.0)
    loaded = llm.warm_up()
    monkeypatch.setattr(loaded.tokenizer.__class__, "decode",
                        lambda self, ids, **kw: "Paris [1]\n\nQuestion: more")
    assert llm.invoke("What is it ?").content == "Paris [1]"
    assert llm.invoke("x", stop=["[1]"]).content == "Paris "


def test_sampling_is_seeded(tiny_folder):
    llm = TransformersChatModel(model_path=str(tiny_folder), chat_template=False, max_tokens=6,
                                temperature=1.0, top_k=0, top_p=1.0, seed=7, stop=["</never>"])
    assert llm.invoke("What is it ?").content == llm.invoke("What is it ?").content


def test_a_peft_adapter_changes_the_output_distribution(tiny_folder, tmp_path):
    peft = pytest.importorskip("peft")
    base = transformers.AutoModelForCausalLM.from_pretrained(str(tiny_folder))
    tuned = peft.get_peft_model(base, peft.PromptTuningConfig(num_virtual_tokens=3,
                                                              task_type="CAUSAL_LM"))
    tuned.save_pretrained(str(tmp_path / "adapter"))
    llm = TransformersChatModel(model_path=str(tiny_folder), adapter_path=str(tmp_path / "adapter"),
                                chat_template=False, max_tokens=3, temperature=0.0)
    loaded = llm.warm_up()
    assert isinstance(loaded.model, peft.PeftModel)
    assert isinstance(llm.invoke("What is it ?").content, str)


def _greedy_by_forward(model, ids, steps: int) -> list[int]:
    """Greedy tokens by full forward passes through the peft model: the path training takes."""
    seq = ids
    with torch.no_grad():
        for _ in range(steps):
            token = model(input_ids=seq).logits[0, -1].argmax().view(1, 1)
            seq = torch.cat([seq, token], 1)
    return seq[0, ids.shape[-1]:].tolist()


@pytest.fixture(scope="module")
def untied_folder(tmp_path_factory):
    # untied output embeddings: the tied tiny model only repeats the last token, prompt or not
    return save_tiny_llama(tmp_path_factory.mktemp("untied-hf"), WORDS, seed=1,
                           tie_word_embeddings=False)


@pytest.mark.parametrize("kind", ["PrefixTuningConfig", "PromptTuningConfig"])
def test_generation_applies_prefixes_and_soft_prompts_as_trained(untied_folder, tmp_path, kind):
    # through PeftModel.generate (peft 0.21, transformers 5) a prefix was ignored and a soft
    # prompt fed again at every step: prefix tuning scored exactly the base model's answers
    peft = pytest.importorskip("peft")
    base = transformers.AutoModelForCausalLM.from_pretrained(str(untied_folder))
    torch.manual_seed(3)
    tuned = peft.get_peft_model(base, getattr(peft, kind)(num_virtual_tokens=4,
                                                          task_type="CAUSAL_LM")).eval()
    ids = torch.tensor([[1, 7, 8, 9, 15, 6]])
    expected = _greedy_by_forward(tuned, ids, 6)
    with tuned.disable_adapter(), torch.no_grad():
        untuned = base.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                max_new_tokens=6, min_new_tokens=6, do_sample=False)
    assert untuned[0, ids.shape[-1]:].tolist() != expected  # the adapter matters here
    with torch.no_grad():
        new = generate_new_tokens(tuned, ids, torch.ones_like(ids), max_new_tokens=6,
                                  do_sample=False, pad_token_id=0)
    assert new[0].tolist() == expected[:new.shape[-1]]
    assert new.shape[-1] == 6 or new[0, -1].item() == base.config.eos_token_id
    # and through the chat model, from the saved adapter
    tuned.save_pretrained(str(tmp_path / "adapter"))
    llm = TransformersChatModel(model_path=str(untied_folder),
                                adapter_path=str(tmp_path / "adapter"), chat_template=False,
                                max_tokens=6, temperature=0.0, repeat_penalty=1.0,
                                stop=["</never>"])
    tokenizer = llm.warm_up().tokenizer
    prompt_ids = tokenizer(llm.render([HumanMessage("What is it ?")]), return_tensors="pt")
    expected = _greedy_by_forward(tuned, prompt_ids["input_ids"], 6)
    message = llm.invoke("What is it ?")
    assert message.content == tokenizer.decode(
        expected[:message.usage_metadata["output_tokens"]], skip_special_tokens=True)


def test_catalogue_hf_models_get_the_transformers_backend(tiny_folder, tmp_path, monkeypatch):
    monkeypatch.setenv("APPKIT_CACHE", str(tmp_path / "cache"))
    register_model(ModelSpec(name="tiny-soft-prompt", role="completion", format="hf",
                             local_path=str(tiny_folder), lineage={"adapter_path": ""}))
    llm = make_chat_model(Profile(), "tiny-soft-prompt", max_tokens=4)
    assert isinstance(llm, TransformersChatModel)
    assert llm.model_path == str(tiny_folder) and not llm.chat_template and llm.max_tokens == 4
