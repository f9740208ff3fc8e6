"""What the ``trl`` trainers of appkit share: progress, a clean Ctrl-C, a time limit, resuming.

:func:`finetune.reward.train_reward`, :func:`finetune.dpo.train_dpo` and
:func:`finetune.rl.train_rl` each wrap a trl trainer that checkpoints into
``<run>/trl/checkpoint-N`` every ``save_every`` steps. A :class:`TrlLoop` adds the rest:

* a progress bar on stderr (stdout stays clean for ``--json``), with whatever the caller's
  ``on_log`` hook returns as its postfix;
* a stop flag (:class:`Interrupt`) checked after every step: a first Ctrl-C sets it, trl finishes
  the step, saves a checkpoint and stops; a second Ctrl-C stops at once;
* an optional time limit (``max_minutes``): when spent, a checkpoint is saved and training ends
  with the reason ``"time limit"`` (the caller treats that run as finished);
* resuming from the newest ``checkpoint-N`` of the trainer's output folder.

Example:
    >>> from finetune.trl_loop import TrlLoop
    >>> loop = TrlLoop("DPO", max_minutes=30)
    >>> loop.stop.requested, loop.stopped
    (False, '')
    >>> trainer = trl.DPOTrainer(..., callbacks=[loop.callback()])  # doctest: +SKIP
    >>> seconds, step, stopped = loop.train(trainer, resume=True)  # doctest: +SKIP
    >>> stopped  # "" (ran to the end), "interrupted" or "time limit"  # doctest: +SKIP
    ''
"""

from __future__ import annotations

import re
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appkit.errors import AppkitError
from appkit.lazy import require
from finetune.runs import Run

OnLog = Callable[[Any, Any, dict[str, Any]], dict[str, str] | None]
_CHECKPOINT = re.compile(r"checkpoint-(\d+)")


class Interrupt:
    """A stop request checked after every step (set by Ctrl-C, or by a test).

    Example:
        >>> from finetune.trl_loop import Interrupt
        >>> stop = Interrupt()
        >>> stop.requested
        False
    """

    def __init__(self) -> None:
        self.requested = False


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest complete ``checkpoint-N`` folder trl wrote in ``out_dir`` (None: none).

    The trainer writes ``trainer_state.json`` after the weights, optimizer and random state, so a
    folder without it (a save cut short by a second Ctrl-C) is passed over.
    """
    found = [p for p in Path(out_dir).glob("checkpoint-*")
             if _CHECKPOINT.fullmatch(p.name) and (p / "trainer_state.json").is_file()]
    return max(found, key=lambda p: int(p.name.split("-")[1])) if found else None


def checkpoint_step(path: str | Path) -> int:
    """The step of a ``checkpoint-N`` folder."""
    return int(Path(path).name.split("-")[1])


def resumable_run(resume: Run | str, kind: str, key: str) -> Run:
    """The run ``resume`` names, checked to be an unfinished run of this kind.

    Args:
        resume: a run or its name.
        kind: what the error messages call it (``DPO``, ``RL``).
        key: the field of ``run.json`` only runs of this kind have (``dpo``, ``rl``).

    Raises:
        AppkitError: no such run, a run of another kind, or a finished one.
    """
    run = resume if isinstance(resume, Run) else Run.open(resume)
    info = run.info
    a = "an" if kind[:1] in "AEFHILMNORSX" else "a"  # an RL run, a DPO run
    if key not in info:
        raise AppkitError(f"run '{run.name}' is not {a} {kind} run (method {info.get('method')}); "
                          f"--resume continues an interrupted {kind} run")
    if info.get("status") == "finished":
        raise AppkitError(f"{kind} run '{run.name}' is already finished; nothing to resume "
                          "(start a new run with another --name)")
    return run


class TrlLoop:
    """Progress bar, stop flag and time limit for one training session of a trl trainer.

    Example:
        >>> from finetune.trl_loop import Interrupt, TrlLoop
        >>> stop = Interrupt()
        >>> loop = TrlLoop("reward model", interrupt=stop)
        >>> loop.stop is stop
        True

    Args:
        desc: the progress bar's label.
        interrupt: a stop flag (tests); without one, Ctrl-C sets this loop's own flag.
        max_minutes: end training (with a checkpoint) after this many minutes of this session
            (0: no limit).
        on_log: called with ``(state, control, logs)`` on each trainer log; it may change
            ``control`` and returns the bar's postfix (or None).
        log: where the Ctrl-C message goes.
    """

    def __init__(self, desc: str, *, interrupt: Interrupt | None = None, max_minutes: float = 0.0,
                 on_log: OnLog | None = None, log: Callable[[str], None] = print) -> None:
        self.desc = desc
        self.stop = interrupt or Interrupt()
        self.handle_sigint = interrupt is None
        self.max_minutes = max_minutes
        self.on_log = on_log
        self.log = log
        self.stopped = ""  # "time limit" once the callback ends training on time

    def callback(self) -> Any:
        """A ``transformers.TrainerCallback`` that draws the bar and checks the flag and time."""
        transformers = require("transformers", extra="finetune")
        loop = self

        class _LoopCallback(transformers.TrainerCallback):
            bar: Any = None
            began = 0.0

            def on_train_begin(self, _args: Any, state: Any, _control: Any, **_: Any) -> None:
                tqdm = require("tqdm", extra="finetune").tqdm
                self.began = time.perf_counter()
                self.bar = tqdm(total=state.max_steps, initial=state.global_step, file=sys.stderr,
                                desc=loop.desc, unit="step", leave=False)

            def on_train_end(self, *_: Any, **__: Any) -> None:
                if self.bar is not None:
                    self.bar.close()

            def on_log(self, _args: Any, state: Any, control: Any, logs: Any = None,
                       **_: Any) -> Any:
                if logs and loop.on_log is not None:
                    postfix = loop.on_log(state, control, logs)
                    if postfix and self.bar is not None:
                        self.bar.set_postfix(postfix, refresh=False)
                return control

            def on_step_end(self, _args: Any, state: Any, control: Any, **_: Any) -> Any:
                if self.bar is not None:
                    self.bar.update(state.global_step - self.bar.n)
                if loop.stop.requested:
                    control.should_save = True
                    control.should_training_stop = True
                elif (loop.max_minutes and not control.should_training_stop
                      and time.perf_counter() - self.began > loop.max_minutes * 60):
                    loop.stopped = "time limit"
                    loop.log(f"time limit of {loop.max_minutes:g} min reached at step "
                             f"{state.global_step}; stopping")
                    control.should_save = True
                    control.should_training_stop = True
                return control

        return _LoopCallback()

    def train(self, trainer: Any, *, resume: bool = False,
              run: Run | None = None) -> tuple[float, int, str]:
        """Run ``trainer.train()``, from the newest checkpoint of its output folder when resuming.

        Installs a SIGINT handler for the session (unless a stop flag was passed in) and restores
        the previous one afterwards. Resuming with ``run``, its ``log.jsonl`` is cut back to the
        checkpoint's step first, since the steps after it are trained (and logged) again.

        Returns:
            ``(seconds, global step, stopped)`` where ``stopped`` is ``""`` (ran to its end or to a
            caller's own stop), ``"interrupted"`` (stopped before its last step) or
            ``"time limit"``.
        """
        transformers = require("transformers", extra="finetune")
        trainer.remove_callback(transformers.PrinterCallback)  # it prints every log dict to stdout
        stop = self.stop

        def _on_sigint(*_: Any) -> None:
            if stop.requested:
                raise KeyboardInterrupt
            stop.requested = True
            self.log("stopping after this step (a checkpoint is kept); "
                     "Ctrl-C again to stop at once")

        found = latest_checkpoint(trainer.args.output_dir) if resume else None
        if resume and run is not None:
            run.truncate_log(checkpoint_step(found) if found else 0)
        previous = signal.signal(signal.SIGINT, _on_sigint) if self.handle_sigint else None
        start = time.perf_counter()
        try:
            trainer.train(resume_from_checkpoint=str(found) if found else None)
        except KeyboardInterrupt:
            stop.requested = True
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        seconds = round(time.perf_counter() - start, 1)
        state = trainer.state
        done = bool(state.max_steps) and state.global_step >= state.max_steps
        # a stop asked for during the last step comes too late to cut anything: the run is done
        stopped = "interrupted" if stop.requested and not done else self.stopped
        return seconds, state.global_step, stopped
