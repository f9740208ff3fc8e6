"""Pruning: make a model smaller by removing whole structures (``appkit finetune prune``).

**Structured pruning** removes one kind of structure from a llama-family decoder (Llama,
SmolLM2, Qwen2, Gemma 3), chosen by an importance score measured on the user's own data:

* ``layers``: whole decoder layers. A layer's importance is how much it changes the hidden
  state, ``1 - cosine(input, output)`` averaged over the tokens (Men et al. 2024, "ShortGPT");
  the layers that change it least go first.
* ``heads``: attention heads, removed as whole key/value groups so grouped-query attention keeps
  valid shapes: a group's key and value heads go together with the query heads that share them.
  A head's importance is the first-order Taylor score ``sum |activation x gradient|`` of its
  slice of ``o_proj``'s input (Molchanov et al. 2019), summed over the group.
* ``mlp``: intermediate channels of the MLP (rows of ``gate_proj``/``up_proj``, columns of
  ``down_proj``), scored the same way on ``down_proj``'s input.
* ``vocab``: the tokens the data does not use (rows of the embedding and the output layer, and
  the tokenizer's entries; :mod:`finetune.vocab`): the rows' tokens stay, with those of the
  documents in ``keep_tokens_of``, then the tokenizer's commonest.

``refit`` (heads and MLP channels, on by default) then re-solves the weights that read the
removed structure (``o_proj``; ``down_proj``) by ridge least squares so that, on the importance
rows, the kept inputs reproduce the layer's original output as closely as they can: the removed
channels' contribution is folded into the kept ones instead of dropped (the reconstruction step
of structured-pruning methods such as Kwon et al. 2022 and An et al. 2024, "FLAP"). It needs no
gradients, one extra forward pass. On SmolLM2 (43.75 % of the MLP) it halved the loss the cut
caused and lifted held-out F1 without recovery from 27.7 to 43.8; after 300 recovery steps the
two ended level (``benchmarks/RESULTS_small.md``).

``ratio`` is the share of that structure removed. Heads and channels are chosen per layer by
importance but the same number is removed in every layer: transformers' configs hold one head
count and one MLP width for all layers, and so the GGUF export writes single values. The MLP
width kept is rounded to a multiple of 32 (:func:`aligned`), llama.cpp's quantization block, so
a quantized GGUF of the pruned model stays quantized. The config is updated
(``num_hidden_layers``, ``layer_types``, ``intermediate_size``, ``num_attention_heads``/
``num_key_value_heads``, with ``head_dim`` written out so it stays the same) and the model
reloads with ``AutoModelForCausalLM.from_pretrained``.

An optional **recovery** fine-tune (``recover_steps``) trains every weight of the pruned model
on the data for a few steps with :class:`~finetune.trainer.Trainer` (a run with a loss curve).
By default it learns the rows' answers; with ``teacher`` it learns instead to match a teacher's
next-token distributions on every token of the rows, or with ``distill_on="answers"`` on the
answer tokens only, optionally mixed with the answer loss (``answer_weight``) (logit
distillation, :class:`~finetune.distill.LogitTrainer`): ``teacher="original"`` is the model as
it was before pruning (a copy kept in memory), the usual way to recover a pruned model
(Sreenivas et al. 2024, "LLM Pruning and Distillation in Practice: The Minitron Approach"); any
other value names a model with the same vocabulary. On SQuAD, pruning the model already
fine-tuned on the task lost less than pruning the untuned one and training both the same way,
and recovery on the answers beat both forms of distillation over 300 steps
(``benchmarks/RESULTS_small.md``). ``compare_unpruned`` also trains a copy of the unpruned
model with exactly the same recovery and registers it as ``<name>-unpruned``, the model a
pruned one should be compared with.

**Unstructured magnitude pruning** (:func:`magnitude_prune`, ``torch.nn.utils.prune``) is
reported beside it for comparison: it zeroes the smallest weights but removes nothing. llama.cpp
multiplies dense matrices, zeros included, and a GGUF stores every zero like any other weight,
so the file is the same size and generation is no faster; only structured pruning shrinks the
matrices that the kernels multiply.

The pruned model is written as a transformers folder ``<appkit cache>/finetune/models/NAME/
transformers`` and registered as ``NAME`` (format ``hf``) with lineage: base, what, ratio, the
removed indices, the data and its hash, recovery steps. ``appkit finetune export NAME --quant
q4_k_m`` then writes it whole as a GGUF (:func:`finetune.export.export_pruned`): the base GGUF's
tokenizer and metadata, the pruned shapes, every tensor from the pruned weights.

Example:
    >>> from finetune.prune import PruneConfig
    >>> PruneConfig(model="smollm2-135m", data="train.jsonl", ratio=0.25, what="mlp").what
    'mlp'
"""

from __future__ import annotations

import copy
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from appkit.config import PromptConfig
from appkit.errors import AppkitError
from appkit.lazy import require
from finetune.trainer import config_dict

What = Literal["layers", "heads", "mlp", "vocab"]
WHATS = ("layers", "heads", "mlp", "vocab")
IN_LAYERS = ("layers", "heads", "mlp")  # what prune_model removes; vocab: finetune.vocab
SUPPORTED = ("LlamaForCausalLM", "Qwen2ForCausalLM", "Gemma3ForCausalLM")


class PruneError(AppkitError):
    """Pruning cannot be done as asked (ratio, architecture, structure)."""


@dataclass
class PruneConfig:
    """What to prune.

    Example:
        >>> from finetune.prune import PruneConfig
        >>> PruneConfig("smollm2-135m", "train.jsonl", 0.3, what="layers").recover_steps
        0

    Attributes:
        model: a catalogue GGUF name (converted once to float32) or a transformers folder.
        data: JSONL rows (``instruction``/``question``/``prompt``, optional ``input`` and
            ``output``) on which importance is measured and recovery trains.
        ratio: the share of the structure removed, strictly between 0 and 1.
        what: ``layers``, ``heads`` or ``mlp``.
        refit: after removing heads or MLP channels, re-solve ``o_proj``/``down_proj`` by
            least squares so the kept inputs reproduce the original outputs on the rows (on by
            default; layers and vocab have nothing to refit).
        keep_tokens_of: with ``what="vocab"``: a file or folder of documents (any format
            ``appkit ingest`` reads) whose tokens stay too, for example the documents a chat
            app answers from; otherwise only the rows' tokens are sure to stay.
        samples: rows used to measure importance (and to refit).
        batch_size: rows per importance batch and per training micro-batch.
        max_tokens: tokens per text.
        recover_steps: full fine-tuning steps after pruning (0: none).
        teacher: recovery by logit distillation from this model instead of training on the
            rows' answers: ``original`` (the model before pruning) or a model with the same
            vocabulary (a catalogue name or a transformers folder); empty: the answers.
        distill_on: with ``teacher``, where the divergence counts: ``all`` tokens of the rows
            or only the ``answers`` (the positions that predict an answer token).
        answer_weight: with ``teacher``, the share of the recovery loss that is the answer
            loss (0: distillation only).
        compare_unpruned: also give a copy of the *unpruned* model exactly the recovery the
            pruned one gets and register it as ``<name>-unpruned``: the model to compare the
            pruned one with (the recovery's training improves a model by itself).
        lr: recovery learning rate.
        seed: recovery data order.
        threads: torch CPU threads (0: every core).
        prompt: how rows become prompts (the profile's).
    """

    model: str
    data: str
    ratio: float
    what: What = "mlp"
    refit: bool = True
    keep_tokens_of: str = ""
    samples: int = 32
    batch_size: int = 4
    max_tokens: int = 256
    recover_steps: int = 0
    teacher: str = ""
    distill_on: str = "all"
    answer_weight: float = 0.0
    compare_unpruned: bool = False
    lr: float = 2e-5
    seed: int = 0
    threads: int = 0
    prompt: PromptConfig = field(default_factory=PromptConfig)

    def to_dict(self) -> dict[str, Any]:
        return config_dict(self)


@dataclass
class PruneReport:
    """What pruning removed and what it cost.

    Attributes:
        what: the structure pruned.
        ratio: the share asked for.
        removed: per structure, the removed indices (``layers``: layer indices; ``heads``:
            per layer the removed key/value groups; ``mlp``: per layer the removed channels).
        params_before: parameters of the original model.
        params_after: parameters of the pruned model.
        loss_before: mean loss on the answers of the importance rows, original model.
        loss_pruned: the same after pruning, before recovery.
        loss_after: the same after recovery (``loss_pruned`` without recovery).
        loss_unpruned: with ``compare_unpruned``, the same for the unpruned model after the
            same recovery.
        magnitude: the unstructured comparison at the same ratio (:class:`MagnitudeReport`).
    """

    what: str
    ratio: float
    removed: Any
    params_before: int
    params_after: int
    loss_before: float | None = None
    loss_pruned: float | None = None
    loss_after: float | None = None
    loss_unpruned: float | None = None
    magnitude: dict[str, Any] | None = None

    @property
    def reduction(self) -> float:
        """The share of parameters removed."""
        return 1 - self.params_after / self.params_before

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "reduction": round(self.reduction, 4)}


@dataclass
class MagnitudeReport:
    """Unstructured magnitude pruning: how many weights were zeroed (none removed)."""

    ratio: float
    zeroed: int
    prunable: int
    params: int
    loss: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "zeroed_share": round(self.zeroed / max(self.prunable, 1), 4),
                "note": "zeros are still stored and multiplied: same GGUF size, same llama.cpp "
                        "speed"}


# --- the model's parts -------------------------------------------------------------------------


def check_architecture(model: Any) -> None:
    """Raise :class:`PruneError` unless the model is a supported llama-family decoder."""
    name = type(model).__name__
    if name not in SUPPORTED or not hasattr(getattr(model, "model", None), "layers"):
        raise PruneError(f"pruning supports llama-family decoders ({', '.join(SUPPORTED)}); this "
                         f"model is a {name} ({getattr(model.config, 'model_type', '?')})")


def decoder_layers(model: Any) -> Any:
    """The model's ``nn.ModuleList`` of decoder layers."""
    return model.model.layers


def count_params(model: Any) -> int:
    """Parameters, each shared (tied) tensor once."""
    return sum(p.numel() for p in model.parameters())


def head_dim(model: Any) -> int:
    c = model.config
    return int(getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads)


def how_many(ratio: float, total: int, unit: str) -> int:
    """How many of ``total`` structures ``ratio`` removes.

    Raises:
        PruneError: a ratio outside (0, 1), or one that removes none or all of them.
    """
    if not 0 < ratio < 1:
        raise PruneError(f"--ratio must be between 0 and 1 (the share of {unit} removed), "
                         f"got {ratio}")
    n = round(ratio * total)
    if n >= total or total <= 1:
        raise PruneError(f"ratio {ratio} would remove all {total} {unit}; use a smaller ratio "
                         f"(at most {(total - 1) / total:.2f})")
    if n == 0:
        raise PruneError(f"ratio {ratio} removes none of the {total} {unit}; use at least "
                         f"{0.5 / total:.2f}")
    return n


# llama.cpp quantizes rows in blocks of 32 weights (Q4_0, Q5_0, Q8_0; K-quants take 256) and keeps
# a matrix whose rows do not divide into blocks in F16: an MLP 845 channels wide left SmolLM2's
# ffn_down in F16, so its Q4_K_M file was 5% smaller than the unpruned one instead of 25%.
QUANT_BLOCK = 32


def aligned(n: int, total: int) -> int:
    """``n`` of ``total`` channels to remove, moved so that the kept ones are a multiple of
    :data:`QUANT_BLOCK` (at least one block kept and one removed; widths under 8 blocks, or
    not a multiple of a block, are pruned as asked).

    Example:
        >>> aligned(691, 1536)  # keep 832 (26 blocks), not 845
        704
        >>> aligned(16, 64)
        16
    """
    if total % QUANT_BLOCK or total < 8 * QUANT_BLOCK:
        return n
    keep = round((total - n) / QUANT_BLOCK) * QUANT_BLOCK
    return total - min(max(keep, QUANT_BLOCK), total - QUANT_BLOCK)


# --- importance --------------------------------------------------------------------------------


def _batches(encoded: Sequence[Any], batch_size: int, pad_id: int, *, every_token: bool = True
             ) -> list[dict[str, Any]]:
    """Micro-batches: with ``every_token`` a language-model loss on every real token (for
    importance: more signal than the answers alone), else the encoded labels (the answers, as
    recovery trains)."""
    from finetune.trainer import collate

    out = []
    for i in range(0, len(encoded), batch_size):
        b = collate(encoded[i:i + batch_size], pad_id)
        if every_token:
            b["labels"] = b["input_ids"].masked_fill(b["attention_mask"] == 0, -100)
        out.append(b)
    return out


def mean_loss(model: Any, batches: Sequence[dict[str, Any]]) -> float:
    """The token-averaged language-model loss over ``batches`` (no training)."""
    torch = require("torch", extra="finetune")
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for b in batches:
            n = int((b["labels"][:, 1:] != -100).sum())
            total += float(model(**{k: v.to(device) for k, v in b.items()}).loss) * n
            tokens += n
    model.train(was)
    return total / max(tokens, 1)


def layer_importance(model: Any, batches: Sequence[dict[str, Any]]) -> list[float]:
    """Per layer, the mean ``1 - cosine(input, output)`` of the hidden state over real tokens."""
    torch = require("torch", extra="finetune")
    layers = decoder_layers(model)
    scores = [0.0] * len(layers)
    mask: dict[str, Any] = {}
    hooks = []

    def hook(i: int) -> Callable[..., None]:
        def fn(module: Any, args: Any, kwargs: Any, output: Any) -> None:
            x = args[0] if args else kwargs["hidden_states"]
            y = output[0] if isinstance(output, tuple) else output
            cos = torch.nn.functional.cosine_similarity(x.float(), y.float(), dim=-1)
            m = mask["m"].to(cos.dtype)
            scores[i] += float(((1 - cos) * m).sum())
        return fn

    for i, layer in enumerate(layers):
        hooks.append(layer.register_forward_hook(hook(i), with_kwargs=True))
    device = next(model.parameters()).device
    tokens = 0
    model.eval()
    try:
        with torch.no_grad():
            for b in batches:
                mask["m"] = b["attention_mask"].to(device)
                tokens += int(b["attention_mask"].sum())
                model(input_ids=b["input_ids"].to(device),
                      attention_mask=b["attention_mask"].to(device))
    finally:
        for h in hooks:
            h.remove()
    return [s / max(tokens, 1) for s in scores]


def taylor_importance(model: Any, batches: Sequence[dict[str, Any]], module: str) -> list[Any]:
    """Per layer, ``sum |x * dL/dx|`` over tokens of each input feature of ``module``
    (``o_proj``: head slices; ``down_proj``: MLP channels). Gradients are not kept."""
    torch = require("torch", extra="finetune")
    layers = decoder_layers(model)
    part = "self_attn" if module == "o_proj" else "mlp"
    scores: list[Any] = [None] * len(layers)
    hooks = []

    def pre(i: int) -> Callable[..., None]:
        def fn(mod: Any, args: Any) -> None:
            x = args[0]
            if not x.requires_grad:
                return

            def grad_hook(g: Any) -> None:
                s = (x.detach() * g).abs().sum(dim=tuple(range(g.dim() - 1))).double()
                scores[i] = s if scores[i] is None else scores[i] + s
            x.register_hook(grad_hook)
        return fn

    for i, layer in enumerate(layers):
        hooks.append(getattr(getattr(layer, part), module).register_forward_pre_hook(pre(i)))
    device = next(model.parameters()).device
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    # inputs need gradients to flow with frozen weights: ask for them on the embeddings
    embed = model.get_input_embeddings()
    h_embed = embed.register_forward_hook(lambda m, a, out: out.requires_grad_(True))
    model.eval()
    try:
        for b in batches:
            out = model(**{k: v.to(device) for k, v in b.items()})
            out.loss.backward()
    finally:
        h_embed.remove()
        for h in hooks:
            h.remove()
        for p, f in zip(model.parameters(), flags):
            p.requires_grad_(f)
    if any(s is None for s in scores):
        raise PruneError("no gradient reached the pruned modules; the data gave no tokens to "
                         "score")
    return scores


def input_grams(model: Any, batches: Sequence[dict[str, Any]], module: str) -> list[Any]:
    """Per layer, the Gram matrix ``X^T X`` of ``module``'s input (``o_proj`` or ``down_proj``)
    over the real tokens of ``batches``: all :func:`refit_weight` needs, since the original
    output is ``X W^T``. Float32 (one ``width x width`` matrix a layer)."""
    torch = require("torch", extra="finetune")
    layers = decoder_layers(model)
    part = "self_attn" if module == "o_proj" else "mlp"
    grams: list[Any] = [None] * len(layers)
    mask: dict[str, Any] = {}

    def pre(i: int) -> Callable[..., None]:
        def fn(mod: Any, args: Any) -> None:
            x = args[0].detach().float() * mask["m"].unsqueeze(-1)
            x = x.reshape(-1, x.shape[-1])
            grams[i] = x.T @ x if grams[i] is None else grams[i] + x.T @ x
        return fn

    hooks = [getattr(getattr(layer, part), module).register_forward_pre_hook(pre(i))
             for i, layer in enumerate(layers)]
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            for b in batches:
                mask["m"] = b["attention_mask"].to(device).float()
                model(input_ids=b["input_ids"].to(device),
                      attention_mask=b["attention_mask"].to(device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was)
    return grams


# relative to the mean diagonal of the kept inputs' Gram matrix: on SmolLM2 (43.75 % of the MLP)
# 1e-2 gave the lowest loss on rows not used to refit (0.92, against 0.93 at 1e-4; 1.68 unfitted)
REFIT_RIDGE = 1e-2


def refit_weight(weight: Any, gram: Any, keep: Any, ridge: float = REFIT_RIDGE) -> Any:
    """The columns for the kept inputs ``keep`` of a linear layer's ``weight`` (out x in) that
    best reproduce its original output from the kept inputs alone, by ridge least squares:
    ``W_K = W G_{:,K} (G_{K,K} + ridge * mean(diag G_{K,K}) I)^-1`` with ``G`` the inputs'
    Gram matrix (:func:`input_grams`).

    Example:
        >>> import torch
        >>> w = torch.tensor([[1.0, 2.0]]); g = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
        >>> refit_weight(w, g, torch.tensor([0]), ridge=0.0)  # input 1 copies input 0
        tensor([[3.]])
    """
    torch = require("torch", extra="finetune")
    g = gram.double()
    gkk = g[keep][:, keep]
    reg = ridge * float(gkk.diagonal().mean()) * torch.eye(len(keep), dtype=g.dtype)
    # gkk + reg is symmetric, so W_K^T = (gkk + reg)^-1 (g[K,:] W^T)
    solved = torch.linalg.solve(gkk + reg, g[keep] @ weight.double().T)
    return solved.T.to(weight.dtype)


# --- surgery -----------------------------------------------------------------------------------


def _linear(old: Any, rows: Any = None, cols: Any = None) -> Any:
    """A new ``nn.Linear`` holding the kept output ``rows`` and input ``cols`` of ``old``."""
    torch = require("torch", extra="finetune")
    w = old.weight.data
    if rows is not None:
        w = w[rows]
    if cols is not None:
        w = w[:, cols]
    new = torch.nn.Linear(w.shape[1], w.shape[0], bias=old.bias is not None,
                          dtype=w.dtype, device=w.device)
    new.weight.data.copy_(w)
    if old.bias is not None:
        new.bias.data.copy_(old.bias.data[rows] if rows is not None else old.bias.data)
    return new


def remove_layers(model: Any, drop: Sequence[int]) -> None:
    """Remove decoder layers in place and renumber the rest (their KV-cache slots)."""
    torch = require("torch", extra="finetune")
    layers = decoder_layers(model)
    keep = [i for i in range(len(layers)) if i not in set(drop)]
    model.model.layers = torch.nn.ModuleList([layers[i] for i in keep])
    for new, layer in enumerate(model.model.layers):
        for mod in (layer, getattr(layer, "self_attn", None)):
            if mod is not None and hasattr(mod, "layer_idx"):
                mod.layer_idx = new
    c = model.config
    c.num_hidden_layers = len(keep)
    if getattr(c, "layer_types", None):
        c.layer_types = [c.layer_types[i] for i in keep]


def remove_channels(model: Any, keep: Sequence[Any]) -> None:
    """Keep, per layer, the MLP channels ``keep[i]`` (equal counts) in place."""
    for layer, k in zip(decoder_layers(model), keep):
        mlp = layer.mlp
        mlp.gate_proj = _linear(mlp.gate_proj, rows=k)
        mlp.up_proj = _linear(mlp.up_proj, rows=k)
        mlp.down_proj = _linear(mlp.down_proj, cols=k)
        if hasattr(mlp, "intermediate_size"):
            mlp.intermediate_size = len(k)
    model.config.intermediate_size = len(keep[0])


def _slices(groups: Any, width: int) -> Any:
    """The feature indices of ``groups`` when each group is ``width`` adjacent features."""
    torch = require("torch", extra="finetune")
    return torch.cat([torch.arange(g * width, (g + 1) * width) for g in groups.tolist()])


def remove_groups(model: Any, keep: Sequence[Any]) -> None:
    """Keep, per layer, the key/value groups ``keep[i]`` (equal counts) with their query heads."""
    torch = require("torch", extra="finetune")
    c = model.config
    hd = head_dim(model)
    rep = c.num_attention_heads // c.num_key_value_heads
    for layer, groups in zip(decoder_layers(model), keep):
        attn = layer.self_attn
        kv, q = _slices(groups, hd), _slices(groups, rep * hd)
        attn.q_proj = _linear(attn.q_proj, rows=q)
        attn.k_proj = _linear(attn.k_proj, rows=kv)
        attn.v_proj = _linear(attn.v_proj, rows=kv)
        attn.o_proj = _linear(attn.o_proj, cols=q)
        for attr, value in (("num_heads", len(groups) * rep),
                            ("num_key_value_heads", len(groups))):
            if hasattr(attn, attr):
                setattr(attn, attr, value)
    n = len(keep[0])
    c.head_dim = hd  # the default hidden_size // heads would change with fewer heads
    c.num_attention_heads = n * rep
    c.num_key_value_heads = n


def prune_model(model: Any, batches: Sequence[dict[str, Any]], what: str, ratio: float, *,
                refit: bool = False) -> Any:
    """Prune ``model`` in place by importance on ``batches``; returns what was removed.

    Args:
        model: a supported decoder (see :data:`SUPPORTED`).
        batches: micro-batches of the user's data (``input_ids``, ``attention_mask``,
            ``labels``).
        what: ``layers``, ``heads`` or ``mlp``.
        ratio: the share removed, in (0, 1).
        refit: heads and MLP channels: re-solve the reading layer (``o_proj``/``down_proj``)
            on ``batches`` so the kept inputs reproduce the original output
            (:func:`refit_weight`); ignored for layers.

    Returns:
        ``layers``: the removed layer indices; otherwise per layer the removed group or
        channel indices.

    Raises:
        PruneError: an unknown structure, a bad ratio, an unsupported architecture.
    """
    torch = require("torch", extra="finetune")
    if what not in IN_LAYERS:
        raise PruneError(f"unknown structure '{what}'; prune one of {', '.join(IN_LAYERS)}")
    check_architecture(model)
    c = model.config
    if what == "layers":
        n = how_many(ratio, len(decoder_layers(model)), "layers")
        scores = layer_importance(model, batches)
        drop = sorted(sorted(range(len(scores)), key=lambda i: scores[i])[:n])
        remove_layers(model, drop)
        return drop
    if what == "mlp":
        n = aligned(how_many(ratio, c.intermediate_size, "MLP channels per layer"),
                    c.intermediate_size)
        scores = taylor_importance(model, batches, "down_proj")
    else:
        groups = c.num_key_value_heads
        n = how_many(ratio, groups, "key/value head groups per layer")
        # o_proj input features are [head, head_dim]; heads of one group are adjacent
        scores = [s.view(groups, -1).sum(-1) for s in taylor_importance(model, batches, "o_proj")]
    keep = [torch.sort(torch.argsort(s, descending=True)[:len(s) - n]).values for s in scores]
    removed = [sorted(set(range(len(s))) - set(k.tolist())) for s, k in zip(scores, keep)]
    if refit:
        module = "down_proj" if what == "mlp" else "o_proj"
        readers = [getattr(layer.mlp if what == "mlp" else layer.self_attn, module)
                   for layer in decoder_layers(model)]
        # o_proj's inputs are the kept groups' query heads
        width = head_dim(model) * (c.num_attention_heads // c.num_key_value_heads)
        cols = keep if what == "mlp" else [_slices(k, width) for k in keep]
        grams = input_grams(model, batches, module)
        fitted = [refit_weight(r.weight.data, g, k) for r, g, k in zip(readers, grams, cols)]
        del grams
    (remove_channels if what == "mlp" else remove_groups)(model, keep)
    if refit:
        for layer, w in zip(decoder_layers(model), fitted):
            getattr(layer.mlp if what == "mlp" else layer.self_attn, module).weight.data.copy_(w)
    return removed


def magnitude_prune(model: Any, ratio: float) -> MagnitudeReport:
    """Zero the ``ratio`` smallest-magnitude weights of every decoder-layer linear in place
    (``torch.nn.utils.prune.l1_unstructured``, made permanent).

    Nothing is removed: the matrices keep their shapes, so the parameter count, the GGUF size and
    llama.cpp's dense matrix multiplications are unchanged.

    Raises:
        PruneError: a ratio outside (0, 1).
    """
    torch = require("torch", extra="finetune")
    if not 0 < ratio < 1:
        raise PruneError(f"--ratio must be between 0 and 1 (the share of weights zeroed), "
                         f"got {ratio}")
    prune = require("torch.nn.utils.prune", extra="finetune", package="torch")
    zeroed = prunable = 0
    for layer in decoder_layers(model):
        for mod in layer.modules():
            if isinstance(mod, torch.nn.Linear):
                prune.l1_unstructured(mod, name="weight", amount=ratio)
                prune.remove(mod, "weight")
                zeroed += int((mod.weight == 0).sum())
                prunable += mod.weight.numel()
    return MagnitudeReport(ratio, zeroed, prunable, count_params(model))


# --- the whole command -------------------------------------------------------------------------


ORIGINAL = "original"


def _recovery(config: PruneConfig) -> str:
    """How recovery learns, for the run and the lineage."""
    if not config.teacher:
        return "the rows' answers"
    how = ("logit distillation from the model before pruning" if config.teacher == ORIGINAL
           else f"logit distillation from {config.teacher}")
    if config.distill_on == "answers":
        how += " on the answer tokens"
    if config.answer_weight:
        how += f", mixed with the answer loss at {config.answer_weight:g}"
    return how


@dataclass
class PruneResult:
    """How a pruning ended: the report, the registered model, the recovery run (if any) and
    the unpruned model given the same recovery (if asked for)."""

    report: PruneReport
    model: Any  # the registered ModelSpec (or the unregistered spec)
    folder: Path
    run: Any  # the recovery Run, or None
    seconds: float
    unpruned: Any = None  # with compare_unpruned: the registered unpruned twin's ModelSpec


def prune(config: PruneConfig, *, name: str = "", log: Callable[[str], None] = print,
          progress: bool = True, register: bool = True, compare_magnitude: bool = True
          ) -> PruneResult:
    """Prune ``config.model`` on ``config.data``, optionally recover, save and register it.

    Args:
        config: the settings.
        name: the catalogue (and recovery run) name (default: ``<model>-pruned-<what>-<time>``).
        log: where progress lines go.
        progress: show progress bars.
        register: add the pruned model to the catalogue.
        compare_magnitude: also measure unstructured magnitude pruning at the same ratio on a
            copy (reported only).

    Raises:
        PruneError: bad ratio or structure, unsupported architecture.
        DataError: missing or malformed data.
        AppkitError: unknown model, or a name already taken.
    """
    from appkit.models.catalogue import ModelSpec, register_model
    from finetune.base import model_folder, new_model_name
    from finetune.data import data_hash, encode_example
    from finetune.distill import (check_distill_mix, load_causal_lm, read_prompts, save_student,
                                  vocabulary, vocabulary_difference)
    from finetune.runs import Run
    from finetune.vocab import read_vocab_map, write_vocab_map

    if config.what not in WHATS:
        raise PruneError(f"unknown structure '{config.what}'; prune one of {', '.join(WHATS)}")
    if not 0 < config.ratio < 1:
        raise PruneError(f"--ratio must be between 0 and 1 (the share of {config.what} removed), "
                         f"got {config.ratio}")
    if config.teacher and config.recover_steps <= 0:
        raise PruneError(f"--teacher {config.teacher} distills during recovery; give "
                         "--recover-steps too")
    if config.keep_tokens_of and config.what != "vocab":
        raise PruneError("--keep-tokens-of chooses which tokens stay; it goes with --what vocab")
    if config.teacher and config.what == "vocab":
        raise PruneError("--teacher distills logits over the whole vocabulary, which --what vocab "
                         "trims; recover on the answers (no --teacher)")
    if config.compare_unpruned and config.recover_steps <= 0:
        raise PruneError("--compare-unpruned gives the unpruned model the pruned one's "
                         "recovery; give --recover-steps too")
    if not config.teacher and (config.distill_on != "all" or config.answer_weight):
        raise PruneError("--distill-on and --answer-weight shape recovery by distillation; "
                         "give --teacher too (for example --teacher original)")
    try:
        check_distill_mix(config.distill_on, config.answer_weight)
    except AppkitError as exc:
        raise PruneError(f"--{exc}") from None
    rows = read_prompts(config.data)
    name = new_model_name(config.model, f"pruned-{config.what}", name)
    if config.compare_unpruned:  # refused now, not after the pruning and recovery
        new_model_name(config.model, "", f"{name}-unpruned")
    if config.teacher and config.teacher != ORIGINAL:
        differ = vocabulary_difference(vocabulary(config.teacher), vocabulary(config.model),
                                       teacher=f"--teacher {config.teacher}",
                                       student=config.model)
        if differ:
            raise PruneError(
                f"recovery distills logits, which needs one vocabulary, but {differ}; use "
                "--teacher original, or no --teacher to recover on the answers")
    torch = require("torch", extra="finetune")
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    start = time.perf_counter()

    model, tokenizer, templated = load_causal_lm(config.model, log=log)
    check_architecture(model)
    source, spec = model_folder(config.model, log=log)
    encoded = [encode_example(r, tokenizer, chat_template=templated, max_tokens=config.max_tokens,
                              prompt=config.prompt) for r in rows]
    batches = _batches(encoded[:config.samples], config.batch_size, tokenizer.pad_token_id)
    # losses are reported on the answers of the same rows, the objective recovery trains
    answers = _batches(encoded[:config.samples], config.batch_size, tokenizer.pad_token_id,
                       every_token=False)
    before = count_params(model)
    loss_before = mean_loss(model, answers)
    magnitude = None
    if compare_magnitude and config.what != "vocab":
        twin = copy.deepcopy(model)
        magnitude = magnitude_prune(twin, config.ratio)
        magnitude.loss = mean_loss(twin, answers)
        del twin
    teacher = None
    unpruned = copy.deepcopy(model) if config.compare_unpruned else None
    if config.teacher == ORIGINAL:
        teacher = copy.deepcopy(model)
    elif config.teacher:
        teacher = load_causal_lm(config.teacher, log=log)[0]
    refit = False  # only heads and MLP channels have a reader to refit
    base_map = source_map = read_vocab_map(source)  # a trimmed model's ids in its base GGUF
    unpruned_rows = (encoded, answers, tokenizer)  # the twin keeps the whole vocabulary
    if config.what == "vocab":
        removed, tokenizer, base_map = _trim_vocab(model, tokenizer, encoded, config, source,
                                                   spec, log=log)
        encoded = [encode_example(r, tokenizer, chat_template=templated,
                                  max_tokens=config.max_tokens, prompt=config.prompt)
                   for r in rows]
        answers = _batches(encoded[:config.samples], config.batch_size, tokenizer.pad_token_id,
                           every_token=False)
    else:
        log(f"measuring {config.what} importance on {min(len(rows), config.samples)} rows")
        refit = config.refit and config.what != "layers"
        removed = prune_model(model, batches, config.what, config.ratio, refit=refit)
    report = PruneReport(config.what, config.ratio, removed, before, count_params(model),
                         loss_before, mean_loss(model, answers),
                         magnitude=magnitude.to_dict() if magnitude else None)
    report.loss_after = report.loss_pruned
    log(f"pruned {config.what}: {before:,} -> {report.params_after:,} parameters "
        f"({report.reduction:.1%} fewer); loss {loss_before:.3f} -> {report.loss_pruned:.3f}")

    run = None
    base = spec.name if spec is not None else str(config.model)
    info = {"base": base, "data": str(Path(config.data).resolve()), "data_hash": data_hash(rows)}
    train_config = None
    if config.recover_steps > 0:
        from finetune.trainer import TrainConfig

        train_config = TrainConfig(
            base=base, data=config.data, method="full", lr=config.lr, dropout=0.0,
            batch_size=config.batch_size, max_steps=config.recover_steps,
            max_tokens=config.max_tokens, save_every=max(config.recover_steps, 1),
            seed=config.seed, threads=config.threads, prompt=config.prompt)
        run = Run.create(name, {**info, "method": "full", "rows": len(rows),
                                "prune": {"what": config.what, "ratio": config.ratio},
                                "recovery": _recovery(config),
                                "config": train_config.to_dict()})
        model = _recover(model, teacher, encoded, train_config, run, config,
                         pad_id=tokenizer.pad_token_id, log=log, progress=progress)
        if unpruned is None:
            teacher = None  # the twin's recovery would need it; otherwise freed before saving
        report.loss_after = mean_loss(model, answers)
        log(f"recovered for {config.recover_steps} steps ({_recovery(config)}): "
            f"loss {report.loss_after:.3f}")

    role = spec.role if spec is not None else ("chat" if templated else "completion")
    folder = save_student(model, tokenizer, name, log=log)
    if base_map is not None:
        write_vocab_map(folder, base_map)
    entry = ModelSpec(
        name=name, role=role, format="hf", local_path=str(folder),
        size=_size(folder),
        lineage={**info, "pruned": config.what, "ratio": config.ratio,
                 "removed": removed, "refit": refit,
                 **({"keep_tokens_of": str(Path(config.keep_tokens_of).resolve())}
                    if config.keep_tokens_of else {}),
                 "params_before": before,
                 "params_after": report.params_after, "recovery_steps": config.recover_steps,
                 "recovery": _recovery(config) if config.recover_steps > 0 else None,
                 "run": run.name if run is not None else None,
                 "pruned_at": time.strftime("%Y-%m-%dT%H:%M:%S")},
        description=f"{base} with {config.ratio:.0%} of its {config.what} pruned "
                    f"({report.reduction:.0%} fewer parameters), served through transformers")
    if register:
        register_model(entry, persist=True)
    twin = None
    if unpruned is not None:
        twin, unpruned = _unpruned_twin(unpruned, teacher, unpruned_rows[0], train_config,
                                        config, name, info, role=role,
                                        tokenizer=unpruned_rows[2],
                                        register=register, log=log, progress=progress)
        report.loss_unpruned = mean_loss(unpruned, unpruned_rows[1])
        if source_map is not None:
            write_vocab_map(Path(twin.local_path), source_map)
        log(f"the unpruned model after the same recovery: loss {report.loss_unpruned:.3f}; "
            f"compare {name} with {twin.name}")
    if run is not None:
        run.update(exports={name: str(folder)}, prune_report=report.to_dict())
    return PruneResult(report, entry, folder, run, time.perf_counter() - start, twin)


def _trim_vocab(model: Any, tokenizer: Any, encoded: Sequence[Any], config: PruneConfig,
                source: Path, spec: Any, *, log: Callable[[str], None]
                ) -> tuple[int, Any, list[int]]:
    """Trim ``model``'s vocabulary in place to what the rows (and ``config.keep_tokens_of``)
    use (:mod:`finetune.vocab`).

    Returns:
        How many tokens were removed, the trimmed tokenizer, and the kept rows' ids in the base
        GGUF's vocabulary.
    """
    import tempfile

    from finetune.export import ExportError, gguf_base
    from finetune.vocab import VocabError, base_ids, choose_tokens, document_texts, \
        gguf_needed_ids, trim_model, trim_tokenizer, trimmed_tokenizer

    total = model.get_input_embeddings().weight.shape[0]
    needed: set[int] = set()
    try:  # the tokens llama.cpp needs stay, so a GGUF export still loads
        in_base = gguf_needed_ids(gguf_base(spec)[1]) if spec is not None else set()
        needed = {row for row, b in enumerate(base_ids(source, range(total))) if b in in_base}
    except ExportError:
        pass  # no GGUF base: served through transformers only
    n = how_many(config.ratio, total, "tokens")
    tok = json.loads(tokenizer.backend_tokenizer.to_str())
    used = {i for e in encoded for i in e.input_ids}
    from_rows = len(used)
    try:
        if config.keep_tokens_of:
            texts = document_texts(config.keep_tokens_of)
            used |= {i for t in texts
                     for i in tokenizer(t, add_special_tokens=False)["input_ids"]}
            log(f"{config.keep_tokens_of}: {len(used) - from_rows:,} more tokens to keep")
        kept = choose_tokens(tok, used, total - n, rows=total, needed=needed)
    except VocabError as exc:
        raise PruneError(str(exc)) from None
    log(f"keeping {len(kept):,} of {total:,} tokens ({from_rows:,} used by the rows)")
    trim_model(model, kept)
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = trimmed_tokenizer(tokenizer, trim_tokenizer(tok, kept), Path(tmp))
    return total - len(kept), tokenizer, base_ids(source, kept)


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def _recover(model: Any, teacher: Any, encoded: Sequence[Any], train_config: Any, run: Any,
             config: PruneConfig, *, pad_id: int, log: Callable[[str], None], progress: bool
             ) -> Any:
    """Train every weight of ``model`` as the recovery asks (answers, or distillation from
    ``teacher``); returns the trained model on the CPU."""
    from finetune.distill import LogitTrainer
    from finetune.trainer import Trainer

    for p in model.parameters():
        p.requires_grad_(True)
    trainer = (LogitTrainer(model, teacher, encoded, train_config, run, pad_id=pad_id,
                            tokens=config.distill_on, answer_weight=config.answer_weight,
                            log=log, progress=progress)
               if teacher is not None else
               Trainer(model, encoded, train_config, run, pad_id=pad_id, log=log,
                       progress=progress))
    trainer.fit()
    # prune does not resume a recovery, so its resume checkpoints (weights and optimizer state,
    # about three times the model: 1.5 GB for SmolLM2) would only fill the user's cache
    for checkpoint in run.checkpoints():
        shutil.rmtree(checkpoint, ignore_errors=True)
    return trainer.model.to("cpu")


def _unpruned_twin(model: Any, teacher: Any, encoded: Sequence[Any], train_config: Any,
                   config: PruneConfig, pruned_name: str, info: dict[str, Any], *, role: str,
                   tokenizer: Any, register: bool, log: Callable[[str], None], progress: bool
                   ) -> tuple[Any, Any]:
    """Give the unpruned ``model`` the pruned one's recovery; save and register it.

    Returns:
        Its catalogue entry and the trained model.
    """
    from appkit.models.catalogue import ModelSpec, register_model
    from finetune.distill import save_student
    from finetune.runs import Run

    name = f"{pruned_name}-unpruned"
    run = Run.create(name, {**info, "method": "full", "rows": len(encoded),
                            "recovery": _recovery(config), "unpruned_twin_of": pruned_name,
                            "config": train_config.to_dict()})
    log(f"training the unpruned model as {pruned_name} was recovered, for comparison")
    trained = _recover(model, teacher, encoded, train_config, run, config,
                       pad_id=tokenizer.pad_token_id, log=log, progress=progress)
    folder = save_student(trained, tokenizer, name, log=log)
    entry = ModelSpec(
        name=name, role=role, format="hf", local_path=str(folder), size=_size(folder),
        lineage={**info, "unpruned_twin_of": pruned_name,
                 "recovery_steps": config.recover_steps, "recovery": _recovery(config),
                 "run": run.name, "trained_at": time.strftime("%Y-%m-%dT%H:%M:%S")},
        description=f"{info['base']} unpruned, trained as {pruned_name} was recovered (the "
                    "model to compare it with), served through transformers")
    if register:
        register_model(entry, persist=True)
    run.update(exports={name: str(folder)})
    return entry, trained
