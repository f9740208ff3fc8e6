"""Helpers shared by the tests (fixtures live in ``conftest.py``)."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
EXAMPLE_DOCS = EXAMPLES / "docs"


def make_pdf(path: Path, pages: list[str]) -> Path:
    """A PDF with one line of text per page (reportlab)."""
    from reportlab.pdfgen import canvas

    pdf = canvas.Canvas(str(path), invariant=1)
    for text in pages:
        pdf.drawString(72, 720, text)
        pdf.showPage()
    pdf.save()
    return path


def save_tiny_llama(folder: Path, words: list[str], *, seed: int = 0,
                    **config: Any) -> Path:
    """A two-layer random Llama and a word-level tokenizer over ``words``, saved as a
    transformers folder; ``config`` overrides LlamaConfig values."""
    import torch
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>",
                                                eos_token="</s>", pad_token="<pad>",
                                                unk_token="<unk>")
    fast.save_pretrained(str(folder))
    torch.manual_seed(seed)
    settings = dict(vocab_size=len(words), hidden_size=32, intermediate_size=64,
                    num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                    max_position_embeddings=256, tie_word_embeddings=True, bos_token_id=1,
                    eos_token_id=2, pad_token_id=0)
    transformers.LlamaForCausalLM(transformers.LlamaConfig(**{**settings, **config})) \
        .save_pretrained(str(folder))
    return folder


def store_ids(store) -> set[str]:
    """Every chunk id in a :class:`~appkit.store.chroma.ChromaStore`."""
    return set(store.collection.get(include=[])["ids"])


def manifest_ids(manifest) -> set[str]:
    """Every chunk id the manifest's committed rows own."""
    return {i for record in manifest.all() for i in record.chunk_ids}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0, proc: Any = None) -> None:
    """Poll ``url`` until it answers (any status), or fail."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=2.0)
            return
        except httpx.HTTPError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"the process exited with {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
