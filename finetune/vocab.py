"""Vocabulary trimming: keep the tokens a user's data needs (``prune --what vocab``).

A small model spends a large share of its parameters on the vocabulary: SmolLM2-135M's tied
embedding is 49,152 x 576 = 28.3 M of its 134.5 M, and the output layer that shares it is one of
the largest matrix products of every generated token. Most of those tokens (code, other
languages) never occur in one user's documents. Trimming removes the rows of the tokens the data
does not use (Ushio et al. 2023, "An Efficient Multilingual Language Model Compression through
Vocabulary Trimming"), from the embedding, the output layer and the tokenizer.

Which tokens stay, in order, until the kept count is reached:

1. the added and special tokens, a BPE tokenizer's base alphabet (the tokens no merge builds:
   its byte symbols), so any text can still be spelled, embedding rows the tokenizer does not
   name, and the base GGUF's control, unknown and byte tokens (llama.cpp needs them);
2. every token the rows use, with the tokens BPE builds it from (a kept token whose parts were
   removed could never be produced);
3. the tokens of the earliest BPE merges (the commonest pairs of the tokenizer's own training
   text), or for a tokenizer without merges the lowest ids.

A BPE merge survives when its two parts and its result are kept, in its old order, so **every
text the rows contain is tokenized exactly as before** and the model computes the same logits
for it, restricted to the kept tokens. Text outside the data may be split into more, shorter
tokens than before.

Example:
    >>> tok = {"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "abb": 3},
    ...                  "merges": [["a", "b"], ["ab", "b"]]}, "added_tokens": []}
    >>> choose_tokens(tok, used={3}, keep=4)   # "abb" needs "ab", which needs "a" and "b"
    [0, 1, 2, 3]
    >>> trim_tokenizer(tok, [0, 1, 3])["model"]["merges"]  # "ab" gone: neither merge survives
    []
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from appkit.errors import AppkitError
from appkit.lazy import require

# beside a trimmed model's weights: for each of its token rows, that token's id in the base
# GGUF's vocabulary (what the GGUF export needs to trim the base's tokenizer the same way)
VOCAB_MAP = "appkit_vocab.json"


class VocabError(AppkitError):
    """The vocabulary cannot be trimmed as asked."""


def _model(tok: dict[str, Any]) -> dict[str, Any]:
    model = tok.get("model") or {}
    if model.get("type") not in ("BPE", "WordLevel"):
        raise VocabError(f"trimming the vocabulary supports BPE and word-level tokenizers; this "
                         f"one is {model.get('type') or 'unknown'}")
    return model


def _merges(model: dict[str, Any]) -> list[tuple[str, str]]:
    # tokenizers writes merges as ["a", "b"] pairs (older files: "a b" strings)
    return [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1))
            for m in model.get("merges") or []]


def choose_tokens(tok: dict[str, Any], used: Iterable[int], keep: int, rows: int = 0,
                  needed: Iterable[int] = ()) -> list[int]:
    """The ``keep`` token ids to keep (sorted): specials and the base alphabet, the ``used``
    ids with the pieces BPE builds them from, then the earliest merges' tokens.

    Args:
        tok: the tokenizer's ``tokenizer.json`` as a dict.
        used: the ids the user's data is tokenized into.
        keep: how many tokens stay.
        rows: the model's embedding rows; rows the tokenizer has no token for are kept too (a
            GGUF's tokenizer may name them, for example its byte tokens).
        needed: ids kept whatever the data uses (:func:`gguf_needed_ids`).

    Raises:
        VocabError: the data (with its pieces and the specials) needs more than ``keep`` tokens,
            or the tokenizer is neither BPE nor word-level.
    """
    model = _model(tok)
    vocab: dict[str, int] = model["vocab"]
    merges = _merges(model)
    parts = {}
    for a, b in merges:
        parts.setdefault(a + b, (a, b))
    names = {i: s for s, i in vocab.items()}
    must = {t["id"] for t in tok.get("added_tokens") or []}
    if merges:
        must |= {i for s, i in vocab.items() if s not in parts}
    must |= (set(range(rows)) - set(vocab.values())) | set(needed)

    def close(ids: Iterable[int]) -> set[int]:
        out: set[int] = set()
        stack = [names[i] for i in ids if i in names]
        while stack:
            s = stack.pop()
            if s in vocab and vocab[s] not in out:
                out.add(vocab[s])
                stack.extend(parts.get(s, ()))
        return out

    kept = must | close(used)
    if len(kept) > keep:
        raise VocabError(
            f"the data needs {len(kept):,} of the {max(rows, len(vocab)):,} tokens (those it "
            f"uses, the pieces they are built from, and {len(must):,} special, base and byte "
            f"tokens), more than the {keep:,} kept; use a ratio of at most "
            f"{max(0.0, 1 - len(kept) / max(rows, len(vocab))):.3f}")
    order = [vocab[a + b] for a, b in merges if a + b in vocab] if merges else sorted(names)
    for i in order:
        if len(kept) >= keep:
            break
        if i not in kept:
            kept |= close([i])  # its pieces come from earlier merges: already kept
    return sorted(kept)


def trim_tokenizer(tok: dict[str, Any], kept: Sequence[int]) -> dict[str, Any]:
    """``tokenizer.json`` with only the ``kept`` ids (renumbered in order) and the merges whose
    parts and result are all kept, in their old order."""
    tok = copy.deepcopy(tok)
    model = _model(tok)
    new = {old: i for i, old in enumerate(kept)}
    names = {i: s for s, i in model["vocab"].items()}
    model["vocab"] = {names[old]: i for old, i in new.items() if old in names}
    if "merges" in model:
        keep = set(model["vocab"])
        model["merges"] = [[a, b] for a, b in _merges(model)
                           if a in keep and b in keep and a + b in keep]
    added = []
    for t in tok.get("added_tokens") or []:
        if t["id"] in new:
            added.append({**t, "id": new[t["id"]]})
    tok["added_tokens"] = added
    _renumber_specials(tok.get("post_processor"), new)
    return tok


def _renumber_specials(processor: Any, new: dict[int, int]) -> None:
    """Template post-processors name their special tokens' ids; renumber them in place."""
    if not isinstance(processor, dict):
        return
    for sub in processor.get("processors") or []:
        _renumber_specials(sub, new)
    for special in (processor.get("special_tokens") or {}).values():
        if isinstance(special, dict) and "ids" in special:
            special["ids"] = [new[i] for i in special["ids"]]


def trim_model(model: Any, kept: Sequence[int]) -> None:
    """Keep the ``kept`` rows of the input embedding and the output layer in place (one tensor
    when they are tied) and renumber the config's special token ids.

    Raises:
        VocabError: a special token id of the config (``bos``/``eos``/``pad``) is not kept.
    """
    torch = require("torch", extra="finetune")
    index = torch.tensor(list(kept))
    new = {old: i for i, old in enumerate(kept)}
    embed, out = model.get_input_embeddings(), model.get_output_embeddings()
    tied = out is not None and out.weight is embed.weight
    # in place, so subclasses (Gemma's scaled embedding) keep what they add
    embed.weight = torch.nn.Parameter(embed.weight.data[index].clone())
    embed.num_embeddings = len(kept)
    if getattr(embed, "padding_idx", None) is not None:
        embed.padding_idx = new.get(embed.padding_idx)
    if out is not None:
        out.weight = embed.weight if tied else torch.nn.Parameter(out.weight.data[index].clone())
        out.out_features = len(kept)
        if getattr(out, "bias", None) is not None:
            out.bias = torch.nn.Parameter(out.bias.data[index].clone())
    configs = [model.config, getattr(model, "generation_config", None)]
    for c in configs:
        if c is None:
            continue
        for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
            value = getattr(c, key, None)
            if value is None:
                continue
            ids = value if isinstance(value, list) else [value]
            missing = [i for i in ids if i not in new]
            if missing:
                raise VocabError(f"the model's {key} {missing} is not among the kept tokens")
            mapped = [new[i] for i in ids]
            setattr(c, key, mapped if isinstance(value, list) else mapped[0])
    model.config.vocab_size = len(kept)


def gguf_needed_ids(path: Path) -> set[int]:
    """The ids of a GGUF's tokenizer that llama.cpp needs whatever the text: its unknown,
    control, user-defined and byte tokens (a SentencePiece-style tokenizer spells text it has no
    token for in bytes, and aborts on a byte it has no token for)."""
    gguf = require("gguf", extra="finetune")
    field = gguf.GGUFReader(str(path)).fields.get("tokenizer.ggml.token_type")
    if field is None:
        return set()
    kinds = {gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.USER_DEFINED,
             gguf.TokenType.BYTE}
    return {i for i, t in enumerate(field.contents()) if t in kinds}


def base_ids(folder: Path, kept: Sequence[int]) -> list[int]:
    """The base-GGUF ids of the ``kept`` rows of the model in ``folder`` (itself trimmed
    before, or not)."""
    earlier = read_vocab_map(folder)
    return [earlier[i] for i in kept] if earlier is not None else list(kept)


def read_vocab_map(folder: Path) -> list[int] | None:
    """A trimmed model's row -> base-GGUF-id map (:data:`VOCAB_MAP`), or None if untrimmed."""
    path = Path(folder) / VOCAB_MAP
    if not path.exists():
        return None
    return [int(i) for i in json.loads(path.read_text())["base_ids"]]


def write_vocab_map(folder: Path, ids: Sequence[int]) -> None:
    (Path(folder) / VOCAB_MAP).write_text(json.dumps({"base_ids": list(ids)}))


def trimmed_tokenizer(tokenizer: Any, tok: dict[str, Any], tmp: Path) -> Any:
    """A transformers tokenizer like ``tokenizer`` (special tokens, chat template) over the
    trimmed ``tok``: saved to ``tmp``, its ``tokenizer.json`` replaced, reloaded."""
    transformers = require("transformers", extra="finetune")
    tokenizer.save_pretrained(str(tmp))
    (tmp / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False))
    return transformers.AutoTokenizer.from_pretrained(str(tmp))


def document_texts(path: str) -> list[str]:
    """The text of every document under ``path`` (a file or a folder, read by ``appkit
    ingest``'s loaders; files without a loader are skipped).

    Raises:
        VocabError: the path does not exist or holds no readable document.
    """
    from appkit.ingest.loaders import loader_for

    root = Path(path).expanduser()
    if not root.exists():
        raise VocabError(f"--keep-tokens-of {path}: no such file or folder")
    files = [root] if root.is_file() else sorted(f for f in root.rglob("*") if f.is_file())
    texts = []
    for f in files:
        loader = loader_for(f)
        if loader is not None:
            try:
                texts += [d.page_content for d in loader.load(f)]
            except AppkitError as exc:
                raise VocabError(f"--keep-tokens-of: cannot read {f}: {exc}") from None
    if not texts:
        raise VocabError(f"--keep-tokens-of {path}: no document appkit can read there")
    return texts
