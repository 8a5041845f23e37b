"""NDJSON sources: one JSON object per line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from segops.engine.sources.sql import quote_literal


def relation_sql(path: Path) -> str:
    """Return a read_json over `path` in newline-delimited mode."""
    return (
        f"read_json({quote_literal(str(path))}, format='newline_delimited', records=true, "
        "sample_size=-1)"
    )


def iter_rows(path: Path) -> Iterator[tuple[int, dict[str, str | None]]]:
    """Yield (line, row) for every non-empty line, values as the engine sees them as text."""
    with path.open(encoding="utf-8-sig") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            record = json.loads(text)
            yield number, {k: _as_text(v) for k, v in record.items()}


def _as_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))
