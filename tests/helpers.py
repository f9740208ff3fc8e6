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


# byte tokens let llama.cpp's SentencePiece-style tokenizer spell any text with a tiny vocabulary
BYTE_TOKENS = [f"<0x{i:02X}>" for i in range(256)]


def write_gguf_metadata(path: Path, config: Any, arch: str, tokens: list[str]) -> Path:
    """A GGUF with a transformers config's hyperparameters and a SentencePiece-style tokenizer
    over ``tokens`` (``<pad> <s> </s> <unk>`` first), but no tensors: what a packaged base GGUF
    gives an export that writes every tensor itself (``finetune.export.write_model_gguf``)."""
    import gguf

    w = gguf.GGUFWriter(str(path), arch)
    w.add_context_length(config.max_position_embeddings)
    w.add_embedding_length(config.hidden_size)
    w.add_block_count(config.num_hidden_layers)
    w.add_feed_forward_length(config.intermediate_size)
    w.add_head_count(config.num_attention_heads)
    w.add_head_count_kv(config.num_key_value_heads)
    w.add_layer_norm_rms_eps(config.rms_norm_eps)
    rope = config.rope_parameters
    w.add_rope_freq_base(float(rope.get("full_attention", rope)["rope_theta"]))
    if arch == "gemma3":
        w.add_key_length(config.head_dim)
        w.add_value_length(config.head_dim)
        w.add_sliding_window(config.sliding_window)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))
    kinds = {"<pad>": gguf.TokenType.CONTROL, "<s>": gguf.TokenType.CONTROL,
             "</s>": gguf.TokenType.CONTROL, "<unk>": gguf.TokenType.UNKNOWN}
    w.add_token_types([kinds.get(t, gguf.TokenType.BYTE if t in BYTE_TOKENS
                                 else gguf.TokenType.NORMAL) for t in tokens])
    for add, token in ((w.add_pad_token_id, "<pad>"), (w.add_bos_token_id, "<s>"),
                       (w.add_eos_token_id, "</s>"), (w.add_unk_token_id, "<unk>")):
        add(tokens.index(token))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def save_tiny_gguf(folder: Path, words: list[str], **config: Any) -> Path:
    """A tiny random Llama as a transformers folder (:func:`save_tiny_llama` over ``words`` and
    the byte tokens) and as a runnable F16 GGUF ``folder/model.gguf`` made from it."""
    import transformers

    from finetune.export import write_model_gguf

    tokens = words + [t for t in BYTE_TOKENS if t not in words]
    save_tiny_llama(folder, tokens, **config)
    meta = write_gguf_metadata(folder.parent / f"{folder.name}-meta.gguf",
                               transformers.AutoConfig.from_pretrained(str(folder)), "llama",
                               tokens)
    return write_model_gguf(meta, folder, folder / "model.gguf", log=lambda s: None)


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
