"""The model-size table of ``appkit models compare --family``: a model and every catalogue model
that descends from it (quantized, pruned, distilled, fine-tuned exports), each with its file size,
parameters, the memory it takes once loaded and its prompt and generation speed on this machine.

Each model is measured in a fresh process (:func:`measure_isolated`), so the resident memory it
adds is its own and not what an earlier model left allocated. GGUF models run through
llama-cpp-python (a LoRA export over its base with ``lora_path``), transformers folders through
transformers (a peft adapter on top where the lineage names one), as the app serves them.

Example:
    >>> from eval.sizes import variant
    >>> from appkit.models.catalogue import ModelSpec
    >>> variant(ModelSpec("small-q4_k_m", "chat", "gguf", lineage={
    ...     "base": "smollm2-135m", "pruned": "mlp", "ratio": 0.45, "quant": "q4_k_m"}))
    'pruned mlp 45%'
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appkit.lazy import require

# about 150 tokens for the tokenizers of the packaged models; prompts are cut to PROMPT_TOKENS
TEXT = ("The committee met on Tuesday to review the budget for the third quarter. Travel costs "
        "rose by a fifth, mostly because of the new office in Lisbon, while software licences "
        "fell after two tools were retired. The chair asked each team to send a plan by Friday "
        "that keeps spending flat, and agreed to revisit hiring once the numbers are in. ") * 3
PROMPT_TOKENS = 128
NEW_TOKENS = 32


def rss_mb() -> float:
    """This process's resident memory in MB (0 where ``/proc`` is not there)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def variant(spec: Any, root: str = "") -> str:
    """What a family member is, from its lineage: ``original``, ``pruned mlp 45%``, ``distilled
    from qwen2.5-coder-0.5b``, ``fine-tuned (lora)``, ``LoRA adapter (lora)``."""
    lin = spec.lineage or {}
    if spec.name == root or not lin:
        return "original"
    parts = []
    if lin.get("pruned"):
        parts.append(f"pruned {lin['pruned']} {lin.get('ratio') or 0:.0%}")
    if lin.get("teacher"):
        parts.append(f"distilled from {lin['teacher']}")
    elif lin.get("method") and not lin.get("pruned"):
        parts.append(f"{'LoRA adapter' if lin.get('mode') == 'lora' else 'fine-tuned'} "
                     f"({lin['method']})")
    return ", ".join(parts) or "derived"


def _disk_bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(
        f.stat().st_size for f in path.rglob("*") if f.is_file())


def describe(spec: Any, path: Path) -> dict[str, Any]:
    """Format, quantization, parameters and bytes on disk, read from the files (nothing run)."""
    np = require("numpy", extra="eval")
    adapter = spec.lineage.get("lora_path") or spec.lineage.get("adapter_path") or ""
    size = _disk_bytes(path) + (_disk_bytes(Path(adapter)) if adapter else 0)
    params, quant = None, None
    if spec.format == "gguf":
        gguf = require("gguf", extra="finetune")
        reader = gguf.GGUFReader(str(path))
        params = sum(int(t.n_elements) for t in reader.tensors)
        field = reader.fields.get("general.file_type")
        if field is not None:
            name = gguf.LlamaFileType(int(field.contents())).name
            quant = name.removeprefix("MOSTLY_").removeprefix("ALL_").lower()
    elif spec.format == "hf":
        safetensors = require("safetensors", extra="finetune")
        params = 0
        for f in sorted(path.glob("*.safetensors")):
            with safetensors.safe_open(str(f), framework="numpy") as st:
                params += sum(int(np.prod(st.get_slice(k).get_shape())) for k in st.keys())
        quant = "f32"
    return {"format": spec.format, "quant": quant,
            "params_m": round(params / 1e6, 3) if params is not None else None,
            "size_mb": round(size / 1e6, 1)}


def measure_model(name: str, *, threads: int = 0, prompt_tokens: int = PROMPT_TOKENS,
                  new_tokens: int = NEW_TOKENS) -> dict[str, Any]:
    """Load a catalogue model, run a ``prompt_tokens`` prompt and ``new_tokens`` greedy tokens.

    Returns:
        ``memory_mb`` (resident memory added by loading and running it: weights, KV cache,
        buffers), ``load_s``, ``prompt_tok_s`` and ``gen_tok_s``.

    Raises:
        AppkitError: an unknown model, or a format that generates no text here (an endpoint,
            an embedder).
    """
    from appkit.errors import AppkitError
    from appkit.models.catalogue import resolve_model

    spec, path = resolve_model(name)
    if spec.format not in ("gguf", "hf"):
        raise AppkitError(f"'{name}' is a {spec.format} model; the size table measures GGUF and "
                          "transformers models")
    # the backend's own libraries are loaded first: the memory is the model's, not torch's
    if spec.format == "gguf":
        require("llama_cpp", extra="chat", package="llama-cpp-python")
    else:
        require("torch", extra="finetune")
        require("transformers", extra="finetune")
    before = rss_mb()
    t0 = time.perf_counter()
    runner = (_llama_cpp_runner if spec.format == "gguf" else _transformers_runner)(
        spec, path, threads, prompt_tokens)
    load = time.perf_counter() - t0
    runner.warm_up()  # first touches of the mapped weights and buffer allocation are not speed
    t1 = time.perf_counter()
    runner.prompt()
    prompt_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    runner.generate(new_tokens)
    gen_s = time.perf_counter() - t2 - runner.prefill_in_generate * prompt_s
    memory = rss_mb() - before
    runner.close()
    return {"memory_mb": round(memory), "load_s": round(load, 2),
            "prompt_tok_s": round(runner.prompt_tokens / prompt_s, 1),
            "gen_tok_s": round(new_tokens / max(gen_s, 1e-9), 1)}


@dataclass
class _Runner:
    """One loaded model: ``warm_up()`` runs a few tokens and forgets them, ``prompt()`` runs the
    prompt, ``generate(n)`` n greedy tokens after it (``prefill_in_generate``: it runs the prompt
    again first, so that time is taken off)."""

    prompt_tokens: int
    warm_up: Callable[[], Any]
    prompt: Callable[[], Any]
    generate: Callable[[int], Any]
    close: Callable[[], Any]
    prefill_in_generate: bool = False


def _llama_cpp_runner(spec: Any, path: Path, threads: int, prompt_tokens: int) -> _Runner:
    """llama.cpp: the prompt fills the KV cache, then one token at a time."""
    from appkit.models.llama_cpp import default_threads

    llama_cpp = require("llama_cpp", extra="chat", package="llama-cpp-python")
    llama = llama_cpp.Llama(model_path=str(path), n_ctx=prompt_tokens + 256,
                            n_threads=threads or default_threads(), verbose=False,
                            lora_path=spec.lineage.get("lora_path") or None)
    ids = llama.tokenize(TEXT.encode(), add_bos=True)[:prompt_tokens]

    def generate(n: int) -> None:
        for _ in range(n):
            llama.eval([llama.sample(top_k=1)])

    def warm_up() -> None:
        llama.eval(ids[:8])
        llama.reset()

    return _Runner(len(ids), warm_up, lambda: llama.eval(ids), generate, llama.close)


def _transformers_runner(spec: Any, path: Path, threads: int, prompt_tokens: int) -> _Runner:
    """transformers: one forward pass over the prompt; ``generate`` for the tokens (it works for
    every peft adapter, prefixes included)."""
    from appkit.models.transformers_chat import generate_new_tokens, load_transformers

    torch = require("torch", extra="finetune")
    if threads:
        torch.set_num_threads(threads)
    loaded = load_transformers(str(path), spec.lineage.get("adapter_path", ""))
    tok = loaded.tokenizer
    ids = tok(TEXT, return_tensors="pt").input_ids[:, :prompt_tokens].to(loaded.device)
    mask = torch.ones_like(ids)

    def prompt(n: int = prompt_tokens) -> None:
        with torch.no_grad():
            loaded.model(input_ids=ids[:, :n], attention_mask=mask[:, :n])

    def generate(n: int) -> None:
        with torch.no_grad():
            generate_new_tokens(loaded.model, ids, mask, max_new_tokens=n, min_new_tokens=n,
                                do_sample=False, pad_token_id=tok.pad_token_id or tok.eos_token_id)

    return _Runner(int(ids.shape[1]), lambda: prompt(8), prompt, generate, lambda: None,
                   prefill_in_generate=True)


def measure_isolated(name: str, **kwargs: Any) -> dict[str, Any]:
    """:func:`measure_model` in a fresh process (spawned), so its memory is its own."""
    import concurrent.futures
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(measure_model, name, **kwargs).result()


def size_table(model: str, *, threads: int = 0, measure: Callable[..., dict[str, Any]] | None
               = None, log: Callable[[str], None] = lambda s: None) -> list[dict[str, Any]]:
    """One row per installed chat or completion model of ``model``'s family
    (:func:`appkit.models.catalogue.family`), the original first.

    Args:
        model: any member of the family (the original or a derived model).
        threads: CPU threads (0: llama.cpp's default, torch's default).
        measure: how a model is measured (default :func:`measure_isolated`).
        log: where progress lines go.

    Returns:
        Rows with ``model``, ``variant``, ``format``, ``quant``, ``params_m``, ``size_mb``,
        ``memory_mb``, ``prompt_tok_s``, ``gen_tok_s`` and ``gen_vs_original`` (generation
        speed over the first row's; ``error`` instead of the measurements when a model could
        not be run).
    """
    from appkit.models.catalogue import family, resolve_model

    measure = measure or measure_isolated
    members = family(model)
    root = members[0].name
    rows = []
    for spec in members:
        if not spec.installed or spec.role not in ("chat", "completion") or \
                spec.format not in ("gguf", "hf"):
            continue
        log(f"measuring {spec.name}")
        row: dict[str, Any] = {"model": spec.name, "variant": variant(spec, root)}
        try:
            row.update(describe(spec, resolve_model(spec.name)[1]))
            row.update(measure(spec.name, threads=threads))
        except Exception as exc:  # noqa: BLE001 - one broken model must not hide the others
            row["error"] = f"{type(exc).__name__}: {exc}"[:300]
        rows.append(row)
    base = rows[0].get("gen_tok_s") if rows and rows[0]["model"] == root else None
    for row in rows:
        if base and row.get("gen_tok_s"):
            row["gen_vs_original"] = round(row["gen_tok_s"] / base, 2)
    return rows

