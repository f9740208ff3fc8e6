"""RL fine-tuning of a LoRA policy with ``trl``'s ``RLOOTrainer``, a KL leash and a KL budget.

Rewards are a sum of functions of ``(prompts, completions)``: the reward model of
``appkit align reward`` (scored on the same sources + question text it was trained on, carried in
each row's ``reward_prompt``), and rule rewards: :func:`citation_reward` (the answer cites a source
that exists), :func:`refusal_penalty`, :func:`answer_reward` (token F1 with the reference answer)
and :func:`length_penalty`. ``beta`` weighs the KL penalty against the frozen
reference (the policy with its adapter switched off, so no second model is held); training
stops when the logged KL goes over ``kl_budget``, and the policy saved is the last one
measured within it (the KL of step t is measured on the policy before update t, so that is the
policy before update t-1).

Every step's reward, KL and one sample generation go into the run's ``log.jsonl``. At the end a
reward-hacking check is stored in the run: the highest-reward samples and the correlation of
reward with answer length.

trl checkpoints into ``<run>/trl`` every ``save_every`` steps (the two newest are kept). A first
Ctrl-C finishes the step, keeps a checkpoint and marks the run ``interrupted`` (no ``final/``);
``resume=`` continues it from that checkpoint with the prompts stored in the run's
``prompts.jsonl``. A KL-budget or ``max_minutes`` stop is a finished run.

The result is a LoRA run like any other (same ``run.json`` fields as DPO), so ``appkit finetune
check`` and ``appkit finetune export`` take it as they are.

Example:
    >>> from finetune.rl import citation_reward
    >>> citation_reward(["Budget: 40k [1].", "No idea."], sources=[1, 1])
    [1.0, 0.0]
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from appkit.errors import AppkitError
from appkit.lazy import require
from finetune.check import REFUSAL
from finetune.data import Example
from finetune.runs import Run, read_jsonl, write_jsonl
from finetune.trl_loop import (
    Interrupt, TrlLoop, resumable_run)

_CITE = re.compile(r"\[(\d{1,3})\]")
_REPEATED_CITE = re.compile(r"(\[\d{1,3}\])[\s,;.]*\1")

RewardFunc = Callable[..., list[float]]


def _text(completion: Any) -> str:
    if isinstance(completion, list):  # conversational: [{"role": "assistant", "content": ...}]
        return "".join(str(m.get("content", "")) for m in completion)
    return str(completion)


def citation_reward(completions: Sequence[Any], sources: Sequence[int] | None = None,
                    answerable: Sequence[bool] | None = None, **_: Any) -> list[float]:
    """1 when the answer cites at least one source and every cited number exists, else 0; on
    rows marked unanswerable, 1 for saying the documents do not cover it (and citing nothing).

    Markers alone are not an answer: a completion with no words outside its markers gets 0, and
    one that repeats a marker back to back (``[1] [1]``) gets half, so piling up citations never
    pays more than one.

    Args:
        completions: the sampled answers.
        sources: per row, how many sources its prompt numbered (default: any number counts).
        answerable: per row, whether its sources hold the answer (default: all do).
    """
    from eval.metrics.alignment import is_refusal

    out = []
    for i, c in enumerate(completions):
        text = _text(c)
        cited = {int(n) for n in _CITE.findall(text)}
        if answerable is not None and not answerable[i]:
            out.append(1.0 if is_refusal(text) and not cited else 0.0)
            continue
        n = sources[i] if sources is not None else None
        valid = cited and (n is None or all(1 <= x <= n for x in cited))
        if not valid or not re.search(r"\w", _CITE.sub("", text)):
            out.append(0.0)
        else:
            out.append(0.5 if _REPEATED_CITE.search(text) else 1.0)
    return out


def refusal_penalty(completions: Sequence[Any], answerable: Sequence[bool] | None = None,
                    **_: Any) -> list[float]:
    """-1 for refusing a question its sources answer, else 0.

    Beside :func:`citation_reward` it makes a refusal of an answerable question cost more than
    a wrong cited answer: without it, RL that learns to refuse unanswerable questions tends to
    refuse answerable ones too, since the refusal is one short string whose probability rises
    everywhere at once (``benchmarks/RESULTS_align.md``).

    Args:
        completions: the sampled answers.
        answerable: per row, whether its sources hold the answer (default: all do).

    Example:
        >>> refusal_penalty(["The documents do not say.", "Paris [1]"], answerable=[True, True])
        [-1.0, 0.0]
    """
    from eval.metrics.alignment import is_refusal

    return [-1.0 if (answerable is None or answerable[i]) and is_refusal(_text(c)) else 0.0
            for i, c in enumerate(completions)]


def answer_reward(completions: Sequence[Any], answer: Sequence[str] | None = None,
                  answerable: Sequence[bool] | None = None, **_: Any) -> list[float]:
    """Token F1 (SQuAD's) of the answer, citation markers removed, with the row's reference
    answer (the best of several joined by ``" ||| "``, as ``appkit finetune check`` scores), on
    rows whose sources hold it; 0 on the others.

    A checked reward beside the reward model: it pays for being right, not for sounding right,
    so RL that learns to refuse unanswerable questions has a reason to keep answering the rest
    well. RLOO compares the samples of one prompt with each other, so the 0 on unanswerable rows
    shifts nothing there.

    Args:
        completions: the sampled answers.
        answer: per row, the reference answer (``policy_rows`` keeps each row's output).
        answerable: per row, whether its sources hold the answer (default: all do).

    Raises:
        AppkitError: the rows carry no reference answers.

    Example:
        >>> answer_reward(["Paris [1].", "Lyon [1]."], answer=["Paris", "Paris"])
        [1.0, 0.0]
    """
    from eval.metrics.squad import token_f1
    from finetune.check import clean_answer, references

    if answer is None:
        raise AppkitError("the answer rule needs prompts with reference answers (an 'answer' "
                          "column; prompts from policy_rows have one)")
    return [token_f1(clean_answer(_text(c)), references(answer[i]))
            if answerable is None or answerable[i] else 0.0
            for i, c in enumerate(completions)]


def length_penalty(completions: Sequence[Any], *, limit: int = 400, per_char: float = 0.002,
                   **_: Any) -> list[float]:
    """``-per_char`` for every character past ``limit`` (long answers are not better answers)."""
    return [-per_char * max(0, len(_text(c)) - limit) for c in completions]


def reward_model_reward(model: Any) -> RewardFunc:
    """A trl reward function scoring with an :class:`appkit.models.reward.RewardModel`.

    Rows carry the reward model's own prompt text in ``reward_prompt`` (sources and question);
    without it the policy's prompt is used.
    """

    def reward_model(prompts: Sequence[Any], completions: Sequence[Any],
                     reward_prompt: Sequence[str] | None = None, **_: Any) -> list[float]:
        texts = reward_prompt or [_text(p) for p in prompts]
        return model.score_pairs([(p, _text(c)) for p, c in zip(texts, completions)])

    return reward_model


@dataclass
class RLResult:
    """What :func:`train_rl` produced.

    Attributes:
        run: the run folder (its ``final/`` holds the LoRA adapter).
        steps: optimizer steps taken.
        stopped: why training ended early (``kl budget``, ``time limit`` or ``interrupted``),
            or "".
        kept_step: after a KL-budget stop, the step whose policy was saved (the last one
            measured within the budget), or None when no earlier policy was kept.
        history: per step ``reward``, ``kl`` and a ``sample``.
        hacking: the reward-hacking check: ``top`` samples and ``length_correlation``.
    """

    run: Run
    steps: int
    stopped: str = ""
    kept_step: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    hacking: dict[str, Any] = field(default_factory=dict)


def _trainable(model: Any) -> dict[str, Any]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def _restore(model: Any, weights: dict[str, Any]) -> None:
    params = dict(model.named_parameters())
    for n, w in weights.items():
        params[n].data.copy_(w)


def _pearson(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    n = len(xs)
    if n < 3:
        return None
    mx, my = sum(xs) / n, sum(ys) / n
    sx = math.sqrt(sum((x - mx) ** 2 for x in xs))
    sy = math.sqrt(sum((y - my) ** 2 for y in ys))
    if sx == 0 or sy == 0:
        return None
    return round(sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / (sx * sy), 4)


def policy_rows(rows: Sequence[Any], tokenizer: Any, chat_template: bool,
                prompt: Any = None) -> list[dict[str, Any]]:
    """RL prompts from QA rows (:class:`finetune.data.Example`), rendered as the app renders them.

    Each row keeps the reward model's text (``reward_prompt``), how many sources it numbered
    (``sources``, for :func:`citation_reward`) and its reference answer (``answer``, for
    :func:`answer_reward`).
    """
    from appkit.models.reward import reward_prompt
    from finetune.data import prompt_text, render_messages

    out = []
    for r in rows:
        passages = [r.input] if r.input else []
        out.append({"prompt": prompt_text(render_messages(r, prompt), tokenizer, chat_template),
                    "reward_prompt": reward_prompt(r.instruction, passages),
                    "sources": len(passages), "answerable": r.output != REFUSAL,
                    "answer": r.output})
    return out


def with_unanswerable(rows: Sequence[Any], share: float, *, seed: int = 0) -> list[Any]:
    """The rows plus ``share`` of them again with an unrelated passage and the refusal as answer
    (SQuAD v2 style), so RL rewards refusing where the sources do not hold the answer."""
    from finetune.dpo import auto_pairs

    if share <= 0:
        return list(rows)
    variants = [Example(p.question, REFUSAL, input=p.context, group="unanswerable")
                for p in auto_pairs(rows, seed=seed, answerable=False)]
    random.Random(seed).shuffle(variants)
    return [*rows, *variants[:max(1, round(len(rows) * share))]]


def train_rl(model: Any, tokenizer: Any, rows: Sequence[dict[str, Any]], *,
             reward_funcs: Sequence[RewardFunc], name: str = "",
             info: dict[str, Any] | None = None,
             reward_weights: Sequence[float] | None = None, beta: float = 0.05,
             kl_budget: float = 0.0, lr: float = 1e-5, max_steps: int = 100,
             batch_size: int = 4, num_generations: int = 4, max_completion_length: int = 64,
             temperature: float = 1.0, lora_r: int = 8, lora_alpha: int = 16,
             targets: Sequence[str] | None = None, seed: int = 0, save_every: int = 10,
             max_minutes: float = 0.0, resume: Run | str | None = None,
             interrupt: Interrupt | None = None, callbacks: Sequence[Any] = (),
             root: str | None = None, log: Callable[[str], None] = print) -> RLResult:
    """Optimise a LoRA policy for the rewards with RLOO, within a KL budget.

    trl checkpoints into ``<run>/trl`` every ``save_every`` steps (the two newest are kept). A
    first Ctrl-C finishes the step, saves a checkpoint and stops: the run is ``interrupted``, has
    no ``final/`` and continues with ``resume``. A KL-budget or time-limit stop is a finished run.

    Args:
        model: the policy: a causal LM, or a peft model whose adapter keeps training. With
            ``resume``, the same starting policy as the first session (the checkpoint's adapter
            is loaded into it).
        tokenizer: its tokenizer (a pad token is set from EOS when missing).
        rows: prompts: ``{"prompt": str, ...}``; other keys (``reward_prompt``, ``sources``) reach
            the reward functions. They are written to the run's ``prompts.jsonl``; with
            ``resume`` those are used and ``rows`` is ignored.
        reward_funcs: functions ``f(prompts, completions, **row_columns) -> list[float]`` (with
            ``resume``, the same ones, by name, as the first session).
        name: the run name (not needed with ``resume``).
        info: extra fields for ``run.json`` (base, parent run, LoRA config, what the caller
            needs to rebuild the policy and rewards when resuming).
        reward_weights: one weight per reward function (default 1 each).
        beta: the KL penalty's weight (0: no reference, no KL).
        kl_budget: stop when the logged KL exceeds this (0: no budget) and save the last
            policy measured within it.
        lr: learning rate.
        max_steps: optimizer steps.
        batch_size: completions per step (a multiple of ``num_generations``).
        num_generations: samples per prompt (RLOO's leave-one-out baseline needs 2 or more).
        max_completion_length: longest sampled answer in tokens.
        temperature: sampling temperature.
        lora_r: LoRA rank when ``model`` has no adapter yet.
        lora_alpha: LoRA alpha.
        targets: LoRA target modules (default: every linear projection).
        seed: the seed.
        save_every: checkpoint every N steps.
        max_minutes: end this session after so many minutes, as a finished run (0: no limit).
        resume: an interrupted RL run (or its name) to continue from its newest checkpoint with
            its own prompts and settings (``max_minutes`` and ``save_every`` are this call's).
        interrupt: a stop flag checked after each step (default: set by Ctrl-C).
        callbacks: extra trainer callbacks.
        root: where the run folder goes (default: the runs folder).
        log: where progress lines go.

    Raises:
        AppkitError: no prompts, a prompt without ``answer`` for :func:`answer_reward`, fewer
            than two generations, a batch that is not a multiple of the generations, or a
            ``resume`` that is not an unfinished RL run with these rewards.
    """
    names = [getattr(f, "__name__", "reward") for f in reward_funcs]
    if resume is not None:
        run = resumable_run(resume, "RL", "rl")
        cfg = run.info["rl"]
        if cfg.get("rewards") != names:
            raise AppkitError(f"RL run '{run.name}' was trained with the rewards "
                              f"{cfg.get('rewards')}; resuming needs the same, got {names}")
        rows = read_jsonl(run.path / "prompts.jsonl", "prompts")
        beta, kl_budget, lr, max_steps = cfg["beta"], cfg["kl_budget"], cfg["lr"], cfg["max_steps"]
        batch_size, num_generations = cfg["batch_size"], cfg["num_generations"]
        reward_weights = cfg.get("reward_weights") or None
        max_completion_length = cfg.get("max_completion_length", max_completion_length)
        temperature, seed = cfg.get("temperature", temperature), cfg.get("seed", seed)
        lora_r, lora_alpha = cfg.get("lora_r", lora_r), cfg.get("lora_alpha", lora_alpha)
        targets = cfg.get("targets", targets)
    elif not name:
        raise AppkitError("an RL run needs a name (or resume=RUN)")
    if not rows:
        raise AppkitError("no prompts for RL")
    if answer_reward.__name__ in names:
        missing = next((i for i, r in enumerate(rows, 1) if not r.get("answer")), None)
        if missing is not None:
            raise AppkitError(f"prompt {missing} has no reference answer ('answer'), which the "
                              "answer rule scores against")
    if num_generations < 2 or batch_size % num_generations:
        raise AppkitError(f"RLOO needs num_generations >= 2 dividing the batch size; got "
                          f"{num_generations} generations and batch size {batch_size}")
    torch = require("torch", extra="finetune")
    trl = require("trl", extra="finetune")
    peft = require("peft", extra="finetune")
    datasets = require("datasets", extra="finetune")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if resume is None:
        run = Run.create(name, {
            "method": "lora",
            "rl": {"algorithm": "rloo", "beta": beta, "kl_budget": kl_budget, "lr": lr,
                   "max_steps": max_steps, "batch_size": batch_size,
                   "num_generations": num_generations, "rewards": names,
                   "reward_weights": list(reward_weights or []),
                   "max_completion_length": max_completion_length, "temperature": temperature,
                   "lora_r": lora_r, "lora_alpha": lora_alpha,
                   "targets": list(targets) if targets else None, "seed": seed,
                   "save_every": save_every},
            "prompts": len(rows), **(info or {}),
        }, root=root)
        write_jsonl(rows, run.path / "prompts.jsonl")
    out_dir = run.path / "trl"
    result = RLResult(run, 0)
    peft_config = None
    if not hasattr(model, "peft_config"):
        peft_config = peft.LoraConfig(r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0,
                                      target_modules=list(targets) if targets else "all-linear",
                                      task_type="CAUSAL_LM")
    args = trl.RLOOConfig(
        output_dir=str(out_dir), per_device_train_batch_size=batch_size,
        num_generations=num_generations, max_completion_length=max_completion_length,
        learning_rate=lr, beta=beta, max_steps=max_steps, temperature=temperature,
        logging_steps=1, save_strategy="steps", save_steps=max(1, save_every),
        save_total_limit=2, report_to=[], seed=seed,
        use_cpu=not torch.cuda.is_available(), dataloader_num_workers=0, disable_tqdm=True,
        bf16=False, fp16=False, reward_weights=list(reward_weights) if reward_weights else None,
        log_completions=False,
    )
    samples: list[tuple[float, str]] = []
    weights = list(reward_weights or [1.0] * len(reward_funcs))

    pending: list[list[float]] = []

    def _recorded(f: RewardFunc, w: float, last: bool) -> RewardFunc:
        # trl calls the functions in order on the same completions; the last one adds up the
        # weighted values (no function runs twice) for the reward-hacking check.
        def wrapped(prompts: Any, completions: Any, **kw: Any) -> list[float]:
            values = f(prompts=prompts, completions=completions, **kw)
            pending.append([w * (v if v is not None else 0.0) for v in values])
            if last:
                totals = [sum(vs) for vs in zip(*pending)]
                samples.extend((t, _text(c)) for t, c in zip(totals, completions))
                pending.clear()
            return values

        wrapped.__name__ = getattr(f, "__name__", "reward")
        return wrapped

    funcs = [_recorded(f, w, i == len(reward_funcs) - 1)
             for i, (f, w) in enumerate(zip(reward_funcs, weights))]

    def _on_log(state: Any, control: Any, logs: dict[str, Any]) -> dict[str, str] | None:
        if "reward" not in logs:
            return None
        record = {"step": state.global_step, "reward": float(logs["reward"]),
                  "kl": float(logs.get("kl", 0.0)), "loss": float(logs.get("loss", 0.0)),
                  "sample": samples[-1][1][:200] if samples else ""}
        run.log(record)
        result.history.append(record)
        if kl_budget and record["kl"] > kl_budget:
            result.stopped = "kl budget"
            # The KL of step t was measured on the policy before update t, which is over the
            # budget; the one before it (kept[0]) was measured at step t-1, within it.
            result.kept_step = state.global_step - 2 if len(kept) == 2 else None
            log(f"KL {record['kl']:.4f} passed the budget {kl_budget} at step "
                f"{state.global_step}; stopping"
                + (f" and keeping the policy of step {result.kept_step}, the last within it"
                   if result.kept_step is not None else ""))
            control.should_training_stop = True
        return {"reward": f"{record['reward']:.3f}", "kl": f"{record['kl']:.4f}"}

    kept: list[dict[str, Any]] = []  # trainable weights before the last two steps

    class _KeepBeforeStep(require("transformers", extra="finetune").TrainerCallback):
        def on_step_begin(self, _args: Any, _state: Any, _control: Any, **_: Any) -> None:
            kept.append(_trainable(trainer.model))
            del kept[:-2]

    loop = TrlLoop("RL", interrupt=interrupt, max_minutes=max_minutes, on_log=_on_log, log=log)
    trainer = trl.RLOOTrainer(
        model=model, reward_funcs=funcs, args=args,
        train_dataset=datasets.Dataset.from_list([dict(r) for r in rows]),
        processing_class=tokenizer, peft_config=peft_config,
        callbacks=[loop.callback(), *([_KeepBeforeStep()] if kl_budget else []), *callbacks])
    run.update(status="running")
    seconds, result.steps, stopped = loop.train(trainer, resume=resume is not None, run=run)
    if resume is not None:  # the steps of earlier sessions too
        result.history = run.history()
    seconds = round(seconds + (run.info.get("train_seconds") or 0), 1)
    result.stopped = stopped or result.stopped
    top = sorted(samples, key=lambda s: -s[0])[:5]
    result.hacking = {
        "top": [{"reward": round(r, 4), "text": t[:300]} for r, t in top],
        "length_correlation": _pearson([r for r, _ in samples], [len(t) for _, t in samples]),
    }
    if result.stopped == "interrupted":
        run.update(status="interrupted", step=result.steps, train_seconds=seconds)
        log(f"interrupted at step {result.steps}; continue with: appkit align rl --resume "
            f"{run.name}")
        return result
    policy = trainer.model
    if result.stopped == "kl budget" and result.kept_step is not None:
        _restore(policy, kept[0])
    if "ref" in getattr(policy, "peft_config", {}):  # trl's copy of a continued adapter
        policy.delete_adapter("ref")
    from finetune.trainer import save_weights

    save_weights(policy, run.final_dir, "lora", atomic=True)
    run.update(status="finished", step=result.steps, train_seconds=seconds,
               stopped=result.stopped, kept_step=result.kept_step, reward_hacking=result.hacking,
               rl_metrics={"first_reward": result.history[0]["reward"] if result.history else None,
                           "last_reward": result.history[-1]["reward"] if result.history else None,
                           "last_kl": result.history[-1]["kl"] if result.history else None})
    return result
