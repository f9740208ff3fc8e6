"""Metadata filters for retrieval: by source file, file type and date, in Chroma's ``where`` syntax.

:func:`build_where` turns the filters a person asks for into a Chroma ``where`` clause; dates are
resolved through the ingestion manifest (each file's modification time), because chunks carry only
their ``ingested_at`` stamp. :func:`check_where` rejects a filter that names a field no chunk has,
with an error that lists the fields there are, instead of silently returning nothing.

Example:
    >>> from retrievers.filters import build_where
    >>> build_where(file_type="pdf")
    {'file_type': 'pdf'}
    >>> build_where(source="/docs/a.md", file_type=["md", "txt"])
    {'$and': [{'source': '/docs/a.md'}, {'file_type': {'$in': ['md', 'txt']}}]}
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from appkit.errors import AppkitError

# Fields the ingestor writes on every chunk (plus ``page`` for paged formats).
CHUNK_FIELDS = frozenset({"source", "file_type", "content_hash", "chunk_index", "ingested_at",
                          "heading", "start_index", "page"})
_SAMPLE = 500  # stored chunks sampled to learn fields that loaders add


def _one_or_many(field: str, value: str | Sequence[str]) -> dict:
    if isinstance(value, str):
        return {field: value}
    values = list(value)
    return {field: values[0]} if len(values) == 1 else {field: {"$in": values}}


def _timestamp(value: str | datetime, name: str) -> int:
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(str(value))
        except ValueError:
            raise AppkitError(f"filter '{name}': expected a date such as 2024-05-31, got {value!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1e9)


def build_where(*, source: str | Sequence[str] | None = None,
                file_type: str | Sequence[str] | None = None,
                modified_after: str | datetime | None = None,
                modified_before: str | datetime | None = None,
                manifest: Any = None, where: dict | None = None) -> dict | None:
    """Combine filters into one Chroma ``where`` clause (None when there is no filter).

    Args:
        source: a file path or several (as ingested: absolute).
        file_type: an extension without the dot (``pdf``) or several.
        modified_after: keep files modified on or after this date (ISO text or datetime).
        modified_before: keep files modified before this date.
        manifest: the profile's :class:`~appkit.ingest.manifest.Manifest`; needed for dates.
        where: a raw Chroma clause to AND with the rest.

    Raises:
        AppkitError: a date filter without a manifest, or a date that does not parse.
    """
    clauses: list[dict] = []
    if source:
        clauses.append(_one_or_many("source", [source] if isinstance(source, str) else
                                    [str(Path(s)) for s in source]))
    if file_type:
        types = [file_type] if isinstance(file_type, str) else list(file_type)
        clauses.append(_one_or_many("file_type", [t.lower().lstrip(".") for t in types]))
    if modified_after is not None or modified_before is not None:
        if manifest is None:
            raise AppkitError("date filters need the ingestion manifest (ingest the folder first)")
        lo = _timestamp(modified_after, "modified_after") if modified_after is not None else None
        hi = _timestamp(modified_before, "modified_before") if modified_before is not None else None
        sources = [r.source for r in manifest.all()
                   if (lo is None or r.mtime_ns >= lo) and (hi is None or r.mtime_ns < hi)]
        # No file in the range: a clause that matches nothing, rather than no filter at all.
        clauses.append({"source": {"$in": sources or ["\x00no file in this date range"]}})
    if where:
        clauses.append(where)
    if not clauses:
        return None
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def where_fields(where: dict | None) -> set[str]:
    """The metadata field names a Chroma ``where`` clause refers to."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("$and", "$or"):
                    for sub in value if isinstance(value, list) else [value]:
                        walk(sub)
                elif not key.startswith("$"):
                    found.add(key)
        elif isinstance(node, list):
            for sub in node:
                walk(sub)

    walk(where)
    return found


_known: dict[tuple[int, int], frozenset[str]] = {}


def known_fields(store: Any, extra: Iterable[str] = ()) -> set[str]:
    """Fields chunks in ``store`` carry: the ingestor's, plus any seen in a sample of stored chunks.

    The sample is read once per collection and chunk count, not on every filtered query.
    """
    key = (id(store.collection), store.count())
    if key not in _known:
        fields = set(CHUNK_FIELDS)
        res = store.collection.get(limit=_SAMPLE, include=["metadatas"])
        for meta in res.get("metadatas") or []:
            fields.update((meta or {}).keys())
        if len(_known) > 64:
            _known.clear()
        _known[key] = frozenset(fields)
    return set(_known[key]) | set(extra)


def check_where(store: Any, where: dict | None) -> None:
    """Reject a filter on a field no chunk has (a typo would otherwise return nothing, silently).

    Raises:
        AppkitError: naming the unknown field and the fields there are.
    """
    if not where:
        return
    if not isinstance(where, dict):
        raise AppkitError(f"a filter must be a table of field: value, got {where!r}")
    names = where_fields(where)
    if not names:
        return
    known = known_fields(store)
    unknown = sorted(names - known)
    if unknown:
        raise AppkitError(f"the filter names '{unknown[0]}', which no chunk has; "
                          f"filter on one of: {', '.join(sorted(known))}")
