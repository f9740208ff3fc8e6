"""Training runs on disk: one folder per run under ``<appkit cache>/finetune/runs/<name>``.

A run folder holds ``run.json`` (what was asked, the base, the data hash, the status and the
metrics), ``log.jsonl`` (one line per logged step: the loss curve), ``checkpoints/step-N/`` (written
to a temporary folder and renamed, so an interrupted write leaves the previous checkpoint intact)
and ``final/`` (the trained adapter or full weights).

Example:
    >>> from finetune.runs import Run
    >>> run = Run.create("demo", {"base": "smollm2-135m"}, root=__import__("tempfile").mkdtemp())
    >>> run.info["status"]
    'created'
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from appkit.errors import AppkitError
from finetune.base import finetune_home

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def runs_dir() -> Path:
    """Where runs live."""
    return finetune_home() / "runs"


def write_jsonl(rows: Any, path: Path) -> None:
    """Write dicts as JSONL atomically (a run's training records: pairs, prompts)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(dict(r), ensure_ascii=False) + "\n" for r in rows),
                   encoding="utf-8")
    os.replace(tmp, path)


def read_jsonl(path: Path, what: str) -> list[dict[str, Any]]:
    """Read a run's JSONL records back.

    Raises:
        AppkitError: naming ``what`` (``pairs``, ``prompts``) and the file when it is missing or
            not JSONL.
    """
    try:
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
                if line.strip()]
    except (OSError, ValueError) as exc:
        raise AppkitError(f"cannot read the run's {what} {path} ({exc})") from exc


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)


class Run:
    """One training run's folder.

    Example:
        >>> from finetune.runs import Run
        >>> Run.create("r1", {}, root=__import__("tempfile").mkdtemp()).name
        'r1'

    Args:
        path: the run folder.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def name(self) -> str:
        return self.path.name

    @classmethod
    def create(cls, name: str, info: dict[str, Any], *, root: str | os.PathLike | None = None) -> Run:
        """Make a new run folder.

        Raises:
            AppkitError: the name is not a plain file name, or a run of that name exists.
        """
        if not _NAME.match(name):
            raise AppkitError(f"run name '{name}' must be letters, digits, '.', '_' or '-'")
        path = Path(root) / name if root else runs_dir() / name
        if path.exists():
            raise AppkitError(f"run '{name}' exists at {path}; pass --resume {name} to continue "
                              "it, or choose another --name")
        (path / "checkpoints").mkdir(parents=True)
        run = cls(path)
        run.update(**{"created": time.strftime("%Y-%m-%dT%H:%M:%S"), "status": "created", **info})
        return run

    @classmethod
    def open(cls, name_or_path: str) -> Run:
        """Find a run by name (under :func:`runs_dir`) or by folder.

        Raises:
            AppkitError: no such run.
        """
        p = Path(os.path.expanduser(name_or_path))
        for candidate in (p, runs_dir() / name_or_path):
            if (candidate / "run.json").exists():
                return cls(candidate)
        known = sorted(d.name for d in runs_dir().glob("*") if (d / "run.json").exists()) \
            if runs_dir().exists() else []
        raise AppkitError(f"no run '{name_or_path}'; runs: {', '.join(known) or 'none yet'} "
                          f"(in {runs_dir()})")

    @property
    def info(self) -> dict[str, Any]:
        try:
            return json.loads((self.path / "run.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}

    def update(self, **fields: Any) -> dict[str, Any]:
        info = {**self.info, **fields}
        _write_json(self.path / "run.json", info)
        return info

    def log(self, record: dict[str, Any]) -> None:
        with open(self.path / "log.jsonl", "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")

    def history(self) -> list[dict[str, Any]]:
        """The logged steps (the loss curve), oldest first."""
        path = self.path / "log.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def truncate_log(self, step: int) -> None:
        """Drop log lines after ``step`` (a resumed run replays the steps after its checkpoint)."""
        kept = [r for r in self.history() if r.get("step", 0) <= step]
        tmp = self.path / "log.jsonl.tmp"
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        os.replace(tmp, self.path / "log.jsonl")

    # --- checkpoints ---------------------------------------------------------------------------

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first."""
        found = []
        for d in (self.path / "checkpoints").glob("step-*"):
            if (d / "state.json").exists() and re.fullmatch(r"step-\d+", d.name):
                found.append(d)
        return sorted(found, key=lambda d: int(d.name.split("-")[1]))

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def new_checkpoint_dir(self, step: int) -> tuple[Path, Path]:
        """A temporary folder to write into and the final name to rename it to."""
        final = self.path / "checkpoints" / f"step-{step}"
        tmp = self.path / "checkpoints" / f".step-{step}.partial"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        return tmp, final

    def commit_checkpoint(self, tmp: Path, final: Path, keep: int = 2) -> Path:
        """Rename a written checkpoint into place and drop all but the ``keep`` newest."""
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in self.checkpoints()[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    @property
    def final_dir(self) -> Path:
        return self.path / "final"


def loss_curve(history: list[dict[str, Any]], width: int = 60, height: int = 8) -> str:
    """A small text plot of the loss against the step."""
    points = [(r["step"], r["loss"]) for r in history if "loss" in r]
    if not points:
        return "(no loss logged yet)"
    if len(points) > width:
        size = len(points) / width
        buckets = [points[int(i * size):int((i + 1) * size)] for i in range(width)]
        points = [(b[-1][0], sum(p[1] for p in b) / len(b)) for b in buckets if b]
    lo = min(p[1] for p in points)
    hi = max(p[1] for p in points)
    span = (hi - lo) or 1.0
    rows = [[" "] * len(points) for _ in range(height)]
    for x, (_, loss) in enumerate(points):
        y = int((hi - loss) / span * (height - 1))
        rows[y][x] = "*"
    lines = [f"{hi:7.3f} |" + "".join(rows[0])]
    lines += ["        |" + "".join(r) for r in rows[1:-1]]
    lines += [f"{lo:7.3f} |" + "".join(rows[-1])]
    lines.append(f"         step {points[0][0]} .. {points[-1][0]}")
    return "\n".join(lines)
