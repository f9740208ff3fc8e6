"""The pretraining table (issue 11): a tiny model from scratch vs the base SmolLM2-135M vs SmolLM2 +
LoRA continued pretraining, on the same documents and the same step/time budget.

"The user's documents" are read from ``../shared/bench/`` (never copied into the repository):
``--corpus essay`` is Paul Graham's "What I Worked On" (75 KB), ``--corpus squad`` the SQuAD v1.1
dev paragraphs (first ``--max-chars`` characters, in file order, written to a temporary folder
for the run). The last ``--heldout`` share of the characters is held out for every row; the tiny
model's tokenizer is trained on the rest only.

Rows (``finetune.pretrain``):

- **tiny from scratch**: a byte-level BPE tokenizer (``--vocab-size``) and a Llama decoder
  (``--layers`` x ``--hidden``, about 3M parameters by default) trained for ``--steps`` /
  ``--minutes``;
- **SmolLM2-135M base**: the catalogue's ``smollm2-135m`` (converted to float32 transformers once),
  no training;
- **SmolLM2-135M + LoRA**: continued pretraining on the raw text with LoRA (rank ``--r``), the same
  blocks, steps and time budget.

Perplexity is per token of each model's own tokenizer, so the tiny model's perplexity (vocabulary
4,000) and SmolLM2's (49,152) are **not directly comparable**. The comparable column is **bits per
character**: the total held-out negative log-likelihood in bits divided by the number of held-out
characters, which are the same characters for all three rows. Minutes are training time (held-out
evaluations not counted; for the base row, the time to score the held-out text).

Results: ``benchmarks/out/pretrain/results.json`` and the printed table.

Run: ``.venv/bin/python benchmarks/bench_pretrain.py --corpus essay --steps 300 --threads 2``
Smoke (under a minute): ``.venv/bin/python benchmarks/bench_pretrain.py --steps 2 --eval-every 2
--block-size 64 --batch-size 2 --layers 1 --hidden 64 --heads 2``
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BENCH = REPO.parent / "shared" / "bench"
OUT = REPO / "benchmarks" / "out" / "pretrain"


def squad_text(folder: Path, max_chars: int) -> Path:
    """The SQuAD dev paragraphs as one text file in ``folder`` (a temporary folder)."""
    data = json.loads((BENCH / "squad" / "dev-v1.1.json").read_text(encoding="utf-8"))
    paragraphs, size = [], 0
    for article in data["data"]:
        for p in article["paragraphs"]:
            if size >= max_chars:
                break
            paragraphs.append(p["context"].strip())
            size += len(paragraphs[-1]) + 2
    path = folder / "squad-dev-paragraphs.txt"
    path.write_text("\n\n".join(paragraphs)[:max_chars], encoding="utf-8")
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", choices=["essay", "squad"], default="essay")
    ap.add_argument("--max-chars", type=int, default=300_000, help="squad: characters used")
    ap.add_argument("--base", default="smollm2-135m", help="catalogue name or transformers folder")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--minutes", type=float, default=0.0, help="time budget per trained row")
    ap.add_argument("--eval-every", type=int, default=50)
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--vocab-size", type=int, default=4000)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--hidden", type=int, default=192)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--r", type=int, default=8, help="LoRA rank")
    ap.add_argument("--lora-lr", type=float, default=None, help="default 2e-4")
    ap.add_argument("--scratch-lr", type=float, default=None, help="default 2e-3")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()

    from finetune.pretrain import (
        PretrainConfig, base_perplexity, continue_pretraining, model_folder, pretrain)

    common = dict(block_size=args.block_size, steps=args.steps, minutes=args.minutes,
                  eval_every=args.eval_every, batch_size=args.batch_size, threads=args.threads,
                  vocab_size=args.vocab_size, layers=args.layers, hidden=args.hidden,
                  heads=args.heads, lora_r=args.r)
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = (BENCH / "paul_graham" / "paul_graham_essay.txt" if args.corpus == "essay"
                else squad_text(Path(tmp), args.max_chars))
        rows = []
        scratch = pretrain(data, OUT / "scratch", PretrainConfig(lr=args.scratch_lr, **common))
        rows.append({"model": "tiny from scratch", "params": scratch.params,
                     "trainable": scratch.trainable, "steps": scratch.steps,
                     "minutes": scratch.seconds / 60, "ppl": scratch.heldout.ppl,
                     "bpc": scratch.heldout.bits_per_char, "curve": scratch.curve})
        folder = model_folder(args.base)
        start = time.perf_counter()
        base = base_perplexity(folder, data, PretrainConfig(**common))
        rows.append({"model": f"{args.base} base (no training)", "params": None, "trainable": 0,
                     "steps": 0, "minutes": (time.perf_counter() - start) / 60, "ppl": base.ppl,
                     "bpc": base.bits_per_char, "curve": []})
        lora = continue_pretraining(folder, data, OUT / "lora",
                                    PretrainConfig(lr=args.lora_lr, **common))
        rows[-1]["params"] = lora.params - lora.trainable
        rows.append({"model": f"{args.base} + LoRA r={args.r}", "params": lora.params,
                     "trainable": lora.trainable, "steps": lora.steps,
                     "minutes": lora.seconds / 60, "ppl": lora.heldout.ppl,
                     "bpc": lora.heldout.bits_per_char, "curve": lora.curve})
        chars = base.chars

    print(f"\ncorpus: {args.corpus}, held-out {chars:,} characters; budget {args.steps} steps"
          + (f" / {args.minutes} min" if args.minutes else ""))
    print("perplexity is per token of each model's own tokenizer; compare bits per character\n")
    print("| model | parameters | trained | steps | minutes | held-out ppl | bits/char | "
          "best bits/char on the curve (step) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        # A small corpus overfits within the budget: the curve's best point is what early
        # stopping would keep, so it is shown next to the last.
        best = min(r["curve"], key=lambda c: c["heldout_bpc"]) if r["curve"] else None
        r["best_bpc"] = best["heldout_bpc"] if best else r["bpc"]
        where = f"{best['heldout_bpc']:.3f} ({best['step']})" if best else "-"
        print(f"| {r['model']} | {r['params'] / 1e6:.1f}M | {r['trainable'] / 1e6:.2f}M | "
              f"{r['steps']} | {r['minutes']:.1f} | {r['ppl']:.2f} | {r['bpc']:.3f} | {where} |")
    (OUT / "results.json").write_text(json.dumps(
        {"args": vars(args), "heldout_chars": chars, "rows": rows}, indent=2))
    print(f"\nwrote {OUT / 'results.json'}")


if __name__ == "__main__":
    main()
