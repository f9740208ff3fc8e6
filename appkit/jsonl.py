"""Reading JSONL files whose bad lines are reported by file and line number.

Example:
    >>> import tempfile, pathlib
    >>> from appkit.jsonl import read_jsonl
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "rows.jsonl"
    >>> _ = p.write_text('{"q": 1}\\n\\n{"q": 2}\\n')
    >>> [(n, row["q"]) for n, row in read_jsonl(p, "the rows file")]
    [(1, 1), (3, 2)]
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from appkit.errors import AppkitError


def read_jsonl(path: str | os.PathLike, what: str,
               error: type[AppkitError] = AppkitError) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-blank line.

    Args:
        path: the file.
        what: how errors name the file, e.g. ``"the eval set"``.
        error: the error class to raise.

    Raises:
        error: the file is unreadable (named), or a line is not a JSON object (file and line).
    """
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise error(f"cannot read {what} {p}: {getattr(exc, 'strerror', None) or exc}") from exc
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise error(f"{p}, line {no}: not JSON ({exc.msg})") from exc
        if not isinstance(row, dict):
            raise error(f"{p}, line {no}: expected an object, got {type(row).__name__}")
        yield no, row
