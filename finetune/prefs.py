"""Preference data for reward models: one JSONL format, three builders, a split by prompt.

Every line is ``{"prompt", "chosen", "rejected", "source"}``: ``prompt`` is what the reward model
reads before the answer (:func:`appkit.models.reward.reward_prompt`: numbered sources, then the
question), ``chosen`` the preferred answer, ``rejected`` the worse one, ``source`` where the pair came
from. Pairs come from:

* the app's feedback store (thumbs and corrected answers, :func:`appkit.feedback.preference_pairs`);
* QA rows with passages (:func:`automatic_pairs`): the right answer citing its passage ``[1]`` over
  another question's answer citing the same passage (``grounded``), the right answer over "The
  documents do not say." on that passage (``answerable``: without these a reward model learns that
  a refusal always scores well, and RL on it learns to refuse answerable questions), and on an
  unrelated passage "The documents do not say." over the now invented answer and over a span of
  that passage, cited (``unanswerable``, :func:`finetune.dpo.auto_pairs`; the span is what a
  policy answers when it copies from the wrong passage);
* the harmlessness set shipped in ``finetune/data/harmless.jsonl`` (requests to decline, a polite
  refusal preferred).

:func:`split_preferences` makes the held-out split by prompt before anything trains.

Example:
    >>> from finetune.data import Example
    >>> from finetune.prefs import automatic_pairs, split_preferences
    >>> rows = [Example("Who?", "Ada", input="Ada wrote it.", group="a"),
    ...         Example("When?", "1843", input="It was 1843.", group="b")]
    >>> pairs = automatic_pairs(rows)
    >>> sorted({p.source for p in pairs})
    ['answerable', 'grounded', 'unanswerable']
    >>> train, held = split_preferences(pairs, 0.5)
    >>> len(train) + len(held) == len(pairs)
    True
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from appkit.jsonl import read_jsonl
from appkit.models.reward import reward_prompt
from finetune.check import REFUSAL
from finetune.data import DataError, Example

HARMLESS_FILE = Path(__file__).parent / "data" / "harmless.jsonl"
_FIELDS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class Preference:
    """One preference pair.

    Example:
        >>> from finetune.prefs import Preference
        >>> Preference("Question: Who?", "Ada [1]", "Bob [1]", "grounded").source
        'grounded'

    Attributes:
        prompt: what the reward model reads before the answer.
        chosen: the preferred answer.
        rejected: the worse answer.
        source: where it came from (``feedback:correction``, ``grounded``, ``harmless``, ``file``…).
    """

    prompt: str
    chosen: str
    rejected: str
    source: str = "file"


def _check(d: dict, where: str) -> Preference:
    for key in _FIELDS:
        if key not in d:
            raise DataError(f"{where}: '{key}' is missing (each pair needs prompt, chosen, rejected)")
        if not isinstance(d[key], str):
            raise DataError(f"{where}: '{key}' must be a string, got {type(d[key]).__name__}")
    if not d["prompt"].strip():
        raise DataError(f"{where}: the prompt is empty")
    for key in ("chosen", "rejected"):
        if not d[key].strip():
            raise DataError(f"{where}: '{key}' is empty")
    if d["chosen"].strip() == d["rejected"].strip():
        raise DataError(f"{where}: chosen and rejected are the same text, so nothing is preferred")
    source = d.get("source", "file")
    if not isinstance(source, str):
        raise DataError(f"{where}: 'source' must be a string, got {type(source).__name__}")
    return Preference(d["prompt"].strip(), d["chosen"].strip(), d["rejected"].strip(),
                      source or "file")


def read_preferences(path: str | os.PathLike, *, on_error: Literal["raise", "skip"] = "raise"
                     ) -> tuple[list[Preference], list[str]]:
    """Read a preference file; bad pairs are reported by file and line.

    Args:
        path: the JSONL file.
        on_error: ``raise`` stops at the first bad pair; ``skip`` leaves it out and reports it.

    Returns:
        The pairs and one message per skipped line.

    Raises:
        DataError: an unreadable file, a line that is not a JSON object, or (with ``raise``) a
            pair with a missing field, an empty prompt or chosen equal to rejected.
    """
    pairs: list[Preference] = []
    problems: list[str] = []
    for no, row in read_jsonl(path, "the preference file", DataError):
        try:
            pairs.append(_check(row, f"{path}, line {no}"))
        except DataError as exc:
            if on_error == "raise":
                raise
            problems.append(str(exc))
    return pairs, problems


def write_preferences(pairs: Sequence[Preference], path: str | os.PathLike) -> Path:
    """Write pairs as JSONL, atomically."""
    from appkit.feedback import write_jsonl

    write_jsonl((asdict(x) for x in pairs), path)
    return Path(path)


def preferences_hash(pairs: Sequence[Preference]) -> str:
    """A short digest of the pairs (recorded in a reward model's lineage)."""
    blob = json.dumps([asdict(p) for p in pairs], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# --- builders -----------------------------------------------------------------------------------


def feedback_preferences(data_dir: str | os.PathLike) -> list[Preference]:
    """Pairs from the app's feedback store (``<data dir>/feedback.sqlite``): thumbs and corrections."""
    from appkit.feedback import stored_preference_pairs

    out = []
    for r in stored_preference_pairs(data_dir):
        prompt = reward_prompt(r.get("question") or r["prompt"], r.get("contexts") or ())
        if r["chosen"] != r["rejected"]:
            out.append(Preference(prompt, r["chosen"], r["rejected"], f"feedback:{r['origin']}"))
    return out


def automatic_pairs(rows: Sequence[Example], *, refusal: str = REFUSAL, seed: int = 0,
                    near_miss: bool = False) -> list[Preference]:
    """Grounded-vs-unsupported, answer-over-refusal and refuse-when-unanswerable pairs from QA rows
    with passages.

    Args:
        rows: QA rows; the ones with a passage (``input``) make pairs.
        refusal: the answer that says the documents do not cover it.
        seed: which wrong answers are drawn.
        near_miss: also pair each answer with a cited span of its own passage that does not
            answer the question (source ``near-miss``): another question's answer about the same
            passage where there is one, else a span of the passage as long as the answer, from
            one sentence, sharing no word with it. That is what a policy's own wrong answers
            look like; the grounded pairs draw their negatives from other passages, which a
            reward model can tell apart by the passage alone.

    Raises:
        DataError: fewer than two groups of passages.
    """
    from finetune.dpo import auto_pairs

    out: list[Preference] = []
    rng = random.Random(seed)
    qa = [r for r in rows if r.input]
    near_rng = random.Random(seed + 1)  # its own draws: the grounded pairs stay as they were
    spans: dict[str, list[str]] = {}  # passage -> answers that are in it
    for r in qa:
        if r.output.strip() != refusal:
            spans.setdefault(r.input, []).append(r.output.strip())
    for p in auto_pairs(qa, refusal=refusal, seed=seed, answerable=False):
        prompt = reward_prompt(p.question, [p.context])
        out.append(Preference(prompt, p.chosen, p.rejected, "unanswerable"))
        # the harder negative a policy writes: a span of the unrelated passage, cited
        near = [a for a in spans.get(p.context, []) if a != p.rejected.strip()]
        if near:
            out.append(Preference(prompt, p.chosen, f"{near[near_rng.randrange(len(near))]} [1]",
                                  "unanswerable"))
    for r in qa:
        others = [o for o in qa if (o.group or o.input) != (r.group or r.input)
                  and o.output.strip() != r.output.strip()]
        if not others:
            continue
        wrong = others[rng.randrange(len(others))].output
        out.append(Preference(reward_prompt(r.instruction, [r.input]), f"{r.output.strip()} [1]",
                              f"{wrong.strip()} [1]", "grounded"))
    for r in qa:
        if r.output.strip() != refusal:
            out.append(Preference(reward_prompt(r.instruction, [r.input]),
                                  f"{r.output.strip()} [1]", refusal, "answerable"))
    if near_miss:
        out += _near_miss_pairs(qa, spans, refusal=refusal, seed=seed)
    return out


_SENTENCE_END = re.compile(r"[.!?;:]$")
_EDGE_PUNCTUATION = " \t\n,.;:!?\"'()[]"


def passage_span(passage: str, words: int, answer: str, rng: random.Random, *,
                 tries: int = 30) -> str | None:
    """A span of ``words`` words of ``passage``, inside one sentence, with a word of three
    letters or more, sharing no word with ``answer`` (SQuAD's normalisation), or None when the
    draws find none.

    Example:
        >>> import random
        >>> passage_span("Ada built the mill. It burned in 1850.", 1, "Ada", random.Random(3))
        'mill'
    """
    from eval.metrics.squad import normalize_answer, token_f1

    tokens = passage.split()
    if len(tokens) < words:
        return None
    for _ in range(tries):
        i = rng.randrange(len(tokens) - words + 1)
        chunk = tokens[i:i + words]
        if any(_SENTENCE_END.search(t) for t in chunk[:-1]):
            continue  # crosses a sentence end
        span = " ".join(chunk).strip(_EDGE_PUNCTUATION)
        content = any(len(w) >= 3 for w in normalize_answer(span).split())
        if content and token_f1(span, [answer]) == 0.0:
            return span
    return None


def _near_miss_pairs(qa: Sequence[Example], spans: dict[str, list[str]], *, refusal: str,
                     seed: int) -> list[Preference]:
    from eval.metrics.squad import token_f1

    rng = random.Random(seed + 2)
    out = []
    for r in qa:
        answer = r.output.strip()
        if answer == refusal:
            continue
        # no shared word with the right answer, so the negative is wrong, not half right
        others = [a for a in spans.get(r.input, []) if token_f1(a, [answer]) == 0.0]
        wrong = (others[rng.randrange(len(others))] if others
                 else passage_span(r.input, len(answer.split()), answer, rng))
        if wrong:
            out.append(Preference(reward_prompt(r.instruction, [r.input]), f"{answer} [1]",
                                  f"{wrong} [1]", "near-miss"))
    return out


def harmless_pairs(path: str | os.PathLike = HARMLESS_FILE) -> list[Preference]:
    """The shipped harmlessness set: requests to decline, a polite refusal preferred."""
    pairs, _ = read_preferences(path)
    return [Preference(reward_prompt(p.prompt), p.chosen, p.rejected, p.source or "harmless")
            for p in pairs]


def split_preferences(pairs: Sequence[Preference], heldout: float = 0.2, *, seed: int = 0
                      ) -> tuple[list[Preference], list[Preference]]:
    """Split by prompt (every pair of one prompt on one side), seeded, before training.

    Raises:
        DataError: ``heldout`` outside (0, 1), or fewer than two distinct prompts.
    """
    if not 0.0 < heldout < 1.0:
        raise DataError(f"the held-out share must be between 0 and 1, got {heldout}")
    prompts = sorted({p.prompt for p in pairs})
    if len(prompts) < 2:
        raise DataError(f"a held-out split needs pairs with at least two different prompts; "
                        f"got {len(prompts)} prompt(s) in {len(pairs)} pair(s)")
    random.Random(seed).shuffle(prompts)
    n_held = min(len(prompts) - 1, max(1, math.ceil(len(prompts) * heldout)))
    held_prompts = set(prompts[:n_held])
    train = [p for p in pairs if p.prompt not in held_prompts]
    held = [p for p in pairs if p.prompt in held_prompts]
    return train, held
