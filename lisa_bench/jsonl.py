"""Read JSON-lines files with errors that name the file and line."""

from __future__ import annotations

import json
from pathlib import Path

from .errors import BadInput


def read_jsonl_records(path: str | Path) -> list[tuple[int, object]]:
    """(line number, parsed value) for every non-blank line; a malformed line is a one-line error."""
    records = []
    for lineno, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append((lineno, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise BadInput(f"{path}:{lineno}: malformed JSON line ({exc.msg})") from None
    return records
