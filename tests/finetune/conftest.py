"""Fixtures of the finetune tests: a character tokenizer, a tiny random Llama, finished runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("peft", reason="needs the finetune extra: pip install -e '.[finetune]'")


class CharTokenizer:
    """A tokenizer with one id per character (ids 3..66); 0 pad, 1 bos, 2 eos."""

    pad_token_id = 0
    bos_token_id = 1
    eos_token_id = 2
    eos_token = "</s>"
    chat_template = None

    class _Out:
        def __init__(self, ids: list[int]):
            self.input_ids = ids

    def __call__(self, text: str, add_special_tokens: bool = True) -> Any:
        ids = [3 + (ord(c) % 64) for c in text]
        return self._Out(([self.bos_token_id] if add_special_tokens else []) + ids)

    def apply_chat_template(self, messages: list[dict], tokenize: bool = False,
                            add_generation_prompt: bool = False) -> str:
        text = "".join(f"<{m['role']}>{m['content']}\n" for m in messages)
        return text + ("<assistant>" if add_generation_prompt else "")


@pytest.fixture
def char_tokenizer() -> CharTokenizer:
    return CharTokenizer()


def tiny_llama(seed: int = 0) -> Any:
    """A two-layer random Llama with a 67-token vocabulary (builds in milliseconds)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=67, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=True, initializer_range=0.2)
    return LlamaForCausalLM(config)


@pytest.fixture
def make_tiny():
    return tiny_llama


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from threads, and spinning threads crawl on a busy machine."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _private_cache(request, monkeypatch, tmp_path):
    """Unit tests get a cache of their own, so runs and exports of one test never meet another's."""
    if not request.node.get_closest_marker("slow"):
        monkeypatch.setenv("APPKIT_CACHE", str(tmp_path / "appkit-cache"))
