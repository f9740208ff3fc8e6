"""Pruning benchmark: SmolLM2-135M with MLP channels (or layers) pruned to >= 25% fewer parameters.

Stages (each writes its numbers into ``benchmarks/out/prune/results.json`` as it finishes, so a
long run can be stopped and continued with ``--stages``):

* ``data``: SQuAD v1.1 dev (read from ``../shared/bench/squad``, never copied into the repository)
  split by article into training rows and held-out questions, as ``bench_finetune_squad.py``
  does; derived files go to the appkit cache.
* ``prune``: ``finetune.prune``: importance on the training rows, structured pruning at
  ``--ratio`` (MLP channels: 0.45 removes about 27% of the 135M parameters; layers: 0.34, ten of
  thirty layers, about 26%), then a full-fine-tuning recovery of ``--recover-steps`` steps; the
  magnitude-pruning comparison at the same ratio comes with it. ``--refit`` re-solves
  ``down_proj`` after the cut (the library's default; the benchmark's is off, as in its earlier
  runs); ``--what vocab`` trims the vocabulary instead (``--keep-tokens-of`` the held-out
  articles' paragraphs, which the data stage writes, keeps the documents' tokens), and
  ``--model NAME`` prunes a model pruned before (a trimmed one, say) further.
* ``reference``: the fair comparison for the recovered model: the *unpruned* model given the
  same full fine-tune (rows, steps, learning rate, batch, seed) as the recovery, so the F1 target
  compares pruning alone and not "trained vs untrained".
* ``twin`` (with ``--prune-trained``, which prunes the reference and then trains it further):
  the reference given the pruned model's recovery unpruned (same rows, steps, learning rate,
  batch, seed), so the F1 lost compares pruning alone. ``--recover-rows K`` recovers on K rows
  after the training rows, which the reference never saw, instead of the training rows.
* ``eval``: token F1 / EM on the held-out questions (gold paragraph as context, the same prompt),
  original, pruned and (after ``reference``/``twin``) the unpruned model with the same training,
  all float32 through transformers so only the pruning differs.
* ``speed``: prompt and generation tokens/s through transformers of the original and the pruned
  model, and through llama.cpp of the packaged GGUF, of the original written and quantized to
  Q4_K_M by the same writer as the pruned model (``finetune.export.write_model_gguf``), and of
  the pruned model exported to Q4_K_M (``appkit finetune export NAME``), so the llama.cpp
  speed-up compares the same quantization.

The goal of issue 11: >= 25% fewer parameters, <= 3 F1 points lost after recovery (against the
``reference`` model), a measured speed-up.

Run: ``.venv/bin/python benchmarks/bench_prune.py --questions 200 --train-rows 800 \
--recover-steps 300``; the fair comparison for a pruned fine-tuned model (session 15):
``--stages reference,prune,twin,eval --prune-trained --ratio 0.4375 --lr 1e-4``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import bench_finetune_squad as squad  # noqa: E402  (SQUAD path, prompt, llama.cpp speed)

OUT = REPO / "benchmarks" / "out" / "prune"
RESULTS = OUT / "results.json"


save = squad.saver(RESULTS)
DEFAULT_NAME = "bench-prune-smollm2"


def key(args, name: str) -> str:
    """The results key of ``name`` for this pruned model (the original's and the reference's
    are shared by every ``--name``)."""
    return squad.run_key(name, args.name, DEFAULT_NAME)


def work_dir() -> Path:
    from finetune.base import finetune_home

    return finetune_home() / "bench-prune"


def stage_data(args) -> None:
    from finetune.data import write_rows

    train, held, articles = squad.split_squad()
    held_titles = {r.group for r in held}
    titles = range(articles)
    d = work_dir()
    d.mkdir(parents=True, exist_ok=True)
    write_rows(train[:args.train_rows], d / "train.jsonl")
    write_rows(held[:args.questions], d / "heldout.jsonl")
    # the documents a chat app over the held-out articles would answer from (their paragraphs,
    # no questions or answers): what --what vocab --keep-tokens-of can keep
    paragraphs = dict.fromkeys(r.input for r in held)
    (d / "heldout-docs.txt").write_text("\n\n".join(paragraphs))
    if args.recover_rows:
        write_rows(train[args.train_rows:args.train_rows + args.recover_rows],
                   recovery_data(args))
    save("data", {"articles": len(titles), "heldout_articles": len(held_titles),
                  "train_rows": min(len(train), args.train_rows),
                  "heldout_questions": min(len(held), args.questions)})


def recovery_data(args) -> Path:
    """The rows recovery trains on: the training rows, or (``--recover-rows K``) the K rows
    after them, which the reference never saw."""
    name = f"recover-{args.recover_rows}.jsonl" if args.recover_rows else "train.jsonl"
    return work_dir() / name


def stage_prune(args) -> None:
    from appkit.models.catalogue import get_spec
    from finetune.prune import PruneConfig, prune

    try:
        spec = get_spec(args.name)
        save(key(args, "prune"), {"model": args.name, "note": "already pruned", **spec.lineage})
        return
    except Exception:  # noqa: BLE001 - not registered yet: prune it
        pass
    model = args.model
    if args.prune_trained:
        if _reference_dir(args) is None:
            raise SystemExit("--prune-trained prunes the reference: run --stages reference first")
        model = _reference_model(args)
    if args.recover_rows and not args.prune_trained:
        raise SystemExit("--recover-rows continues the reference's training: add --prune-trained")
    config = PruneConfig(model=model, data=str(recovery_data(args)),
                         ratio=args.ratio, what=args.what, samples=args.samples,
                         batch_size=2, max_tokens=args.max_tokens,
                         recover_steps=args.recover_steps, refit=args.refit,
                         keep_tokens_of=args.keep_tokens_of,
                         teacher=args.teacher,
                         distill_on=args.distill_on, answer_weight=args.answer_weight, lr=args.lr,
                         threads=args.threads, prompt=squad.prompt_config())
    result = prune(config, name=args.name)
    r = result.report.to_dict()
    r.pop("removed")
    save(key(args, "prune"), {"model": args.name, **r, "seconds": round(result.seconds, 1)})


def _chat(path: str, args):
    from appkit.models.transformers_chat import TransformersChatModel

    return TransformersChatModel(model_path=path, max_tokens=args.max_answer, temperature=0.0,
                                 top_k=1, repeat_penalty=1.0)


REFERENCE = "original + the same training"


def _reference_model(args) -> str:
    """The reference's catalogue name (``appkit finetune export RUN --mode transformers``)."""
    return f"{args.reference}-transformers"


def _reference_dir(args) -> Path | None:
    from appkit.errors import ModelNotAvailableError
    from appkit.models.catalogue import get_spec

    try:
        return Path(get_spec(_reference_model(args)).local_path)
    except ModelNotAvailableError:
        return None


def recovery_config(args, base: str, data: Path):
    """The full fine-tune ``finetune.prune.prune`` gives the pruned model (rows, steps, learning
    rate, batch, seed), for the unpruned models it is compared with."""
    from finetune.trainer import TrainConfig

    return TrainConfig(
        base=base, data=str(data), method="full", lr=args.lr, dropout=0.0, batch_size=2,
        max_steps=args.recover_steps, max_tokens=args.max_tokens,
        save_every=max(args.recover_steps, 1), seed=0, threads=args.threads,
        prompt=squad.prompt_config())


def stage_reference(args) -> None:
    """Fully fine-tune the unpruned model exactly as ``prune`` recovers the pruned one, and
    register it as a transformers model (so it can be scored, and pruned in turn)."""
    from finetune.export import export_run
    from finetune.runs import Run, runs_dir
    from finetune.trainer import train

    name = args.reference
    if not (runs_dir() / name).exists():
        train(recovery_config(args, args.model, work_dir() / "train.jsonl"), name=name)
    run = Run.open(name)
    if _reference_dir(args) is None:
        export_run(run, mode="transformers")
    hist = run.history()
    save("reference", {"run": name, "model": _reference_model(args),
                       "status": run.info.get("status"), "steps": run.info.get("step"),
                       "train_seconds": run.info.get("train_seconds"),
                       **squad.loss_summary(hist)})


TWIN = "unpruned twin"


def _twin_name(args) -> str:
    return f"{args.name}-unpruned"


def _twin_dir(args) -> Path | None:
    from finetune.export import exports_dir

    folder = exports_dir() / _twin_name(args) / "transformers"
    return folder if (folder / "config.json").exists() else None


def stage_twin(args) -> None:
    """Train the reference, unpruned, exactly as ``prune`` recovers the pruned reference
    (``finetune.prune.prune`` builds the same TrainConfig and Trainer)."""
    import torch

    from finetune.data import data_hash, encode_example
    from finetune.distill import load_causal_lm, read_prompts, save_student
    from finetune.runs import Run
    from finetune.trainer import Trainer

    if not args.prune_trained:
        raise SystemExit("the twin continues the reference's training as --prune-trained's "
                         "recovery does; without --prune-trained the reference is the twin")
    name, data = _twin_name(args), recovery_data(args)
    if _twin_dir(args) is None:
        if args.threads:
            torch.set_num_threads(args.threads)
        torch.manual_seed(0)
        model, tokenizer, templated = load_causal_lm(_reference_model(args))
        rows = read_prompts(data)
        encoded = [encode_example(r, tokenizer, chat_template=templated,
                                  max_tokens=args.max_tokens, prompt=squad.prompt_config())
                   for r in rows]
        config = recovery_config(args, _reference_model(args), data)
        run = Run.create(  # a left-over run (interrupted) is refused by name: remove it
            name, {"base": config.base, "data": str(data), "data_hash": data_hash(rows),
                   "method": "full", "rows": len(rows), "config": config.to_dict()})
        trainer = Trainer(model, encoded, config, run, pad_id=tokenizer.pad_token_id)
        trainer.fit()
        save_student(trainer.model.to("cpu"), tokenizer, name)
    run = Run.open(name)
    save(key(args, "twin"), {"run": name, "folder": str(_twin_dir(args)),
                             "steps": run.info.get("step"),
                             "train_seconds": run.info.get("train_seconds"),
                             **squad.loss_summary(run.history())})


def _paths(args, *, reference: bool = False) -> dict[str, str]:
    from appkit.errors import ModelNotAvailableError
    from appkit.models.catalogue import get_spec
    from finetune.base import model_folder

    paths = {"original": str(model_folder(args.model)[0])}
    try:
        paths[key(args, "pruned")] = get_spec(args.name).local_path
    except ModelNotAvailableError:
        if not reference:  # speed compares the two; eval scores what there is
            raise
    trained = _reference_dir(args) if reference else None
    if trained is not None:
        paths[REFERENCE] = str(trained)
    twin = _twin_dir(args) if reference else None
    if twin is not None:
        paths[key(args, TWIN)] = str(twin)
    return paths


def stage_eval(args) -> None:
    from finetune.data import read_rows

    rows = read_rows(work_dir() / "heldout.jsonl")[0][:args.questions]
    squad.score_models(RESULTS, "eval", {label: (lambda p=path: _chat(p, args))
                                         for label, path in _paths(args, reference=True).items()},
                       rows)


def hf_speed(path: str, threads: int, n_gen: int = 32) -> dict:
    """Prompt and greedy generation tokens/s of a transformers folder (float32, CPU)."""
    import torch
    import transformers

    if threads:
        torch.set_num_threads(threads)
    model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype="float32").eval()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    ids = tok("The quick brown fox jumps over the lazy dog. " * 30,
              return_tensors="pt").input_ids[:, :256]
    with torch.no_grad():
        t0 = time.perf_counter()
        out = model(input_ids=ids, use_cache=True)
        t1 = time.perf_counter()
        cache, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
        for _ in range(n_gen):
            out = model(input_ids=nxt, past_key_values=cache, use_cache=True)
            cache, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
        t2 = time.perf_counter()
    return {"prompt_tps": round(ids.shape[1] / (t1 - t0), 1),
            "gen_tps": round(n_gen / (t2 - t1), 1)}


def stage_speed(args) -> None:
    from appkit.models.catalogue import resolve_model
    from finetune.base import convert_gguf, resolve_base
    from finetune.export import export_run, quantize_gguf, write_model_gguf

    out = {f"{label} (transformers fp32)": hf_speed(p, args.threads)
           for label, p in _paths(args).items()}
    out["original (llama.cpp, packaged GGUF)"] = squad.speed(
        str(resolve_model(args.model)[1]), args.threads)
    _, gguf_path = resolve_base(args.model)
    f16 = write_model_gguf(gguf_path, convert_gguf(gguf_path), work_dir() / "original-f16.gguf")
    original = quantize_gguf(f16, work_dir() / "original-q4_k_m.gguf", "q4_k_m")
    pruned = export_run(args.name, quants=("q4_k_m",)).files["q4_k_m"]
    out["original (llama.cpp Q4_K_M)"] = {**squad.speed(str(original), args.threads),
                                          "size_mb": round(original.stat().st_size / 1e6, 1)}
    label = key(args, "pruned")
    out[f"{label} (llama.cpp Q4_K_M)"] = {**squad.speed(str(pruned), args.threads),
                                          "size_mb": round(pruned.stat().st_size / 1e6, 1)}
    f16.unlink()
    for backend, suffix in (("transformers", "(transformers fp32)"),
                            ("llama_cpp", "(llama.cpp Q4_K_M)")):
        a, b = out[f"original {suffix}"], out[f"{label} {suffix}"]
        out[f"pruned_vs_original_gen_{backend}"] = round(b["gen_tps"] / a["gen_tps"], 2)
    save(key(args, "speed"), out)


STAGES = {"data": stage_data, "prune": stage_prune, "reference": stage_reference,
          "twin": stage_twin, "eval": stage_eval, "speed": stage_speed}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--stages", default=",".join(STAGES))
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--name", default=DEFAULT_NAME)
    p.add_argument("--reference", default=f"{DEFAULT_NAME}-reference",
                   help="the unpruned model's training run (shared by every --name)")
    p.add_argument("--what", choices=["layers", "heads", "mlp", "vocab"], default="mlp")
    p.add_argument("--ratio", type=float, default=0.45,
                   help="mlp 0.45 or layers 0.34: >= 25%% fewer parameters for SmolLM2-135M")
    p.add_argument("--samples", type=int, default=64, help="rows scored for importance")
    p.add_argument("--train-rows", type=int, default=800)
    p.add_argument("--questions", type=int, default=200, help="held-out questions")
    p.add_argument("--recover-steps", type=int, default=300)
    p.add_argument("--keep-tokens-of", default="", metavar="PATH",
                   help="--what vocab: documents whose tokens stay too (the data stage writes "
                        "the held-out articles' paragraphs to <work>/heldout-docs.txt)")
    p.add_argument("--refit", action="store_true",
                   help="re-solve down_proj/o_proj by least squares after the cut")
    p.add_argument("--recover-rows", type=int, default=0,
                   help="recover on this many rows after the training rows (0: on the training "
                        "rows); the twin stage trains the unpruned reference on them too")
    p.add_argument("--prune-trained", action="store_true",
                   help="prune the reference (the original fine-tuned on the training rows) "
                        "instead of the untuned original")
    p.add_argument("--teacher", default="",
                   help="recovery by logit distillation: 'original' (the model before pruning)")
    p.add_argument("--distill-on", choices=["all", "answers"], default="all",
                   help="with --teacher: the divergence on every token or the answers only")
    p.add_argument("--answer-weight", type=float, default=0.0,
                   help="with --teacher: the answer loss's share of the recovery loss")
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--max-answer", type=int, default=32)
    p.add_argument("--max-tokens", type=int, default=384)
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args()
    for stage in args.stages.split(","):
        t0 = time.perf_counter()
        STAGES[stage.strip()](args)
        print(f"stage {stage} done in {time.perf_counter() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
