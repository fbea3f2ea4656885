"""Run logs: JSON-lines files that a resumed run continues from its checkpoint's step."""

from __future__ import annotations

import json
from pathlib import Path


class JsonLines:
    """A JSON-lines log; on resume it keeps the rows of the steps before the checkpoint."""

    def __init__(self, path: Path, keep_before: int = 0):
        kept = []
        if keep_before and path.exists():
            kept = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] < keep_before]
        self.fh = open(path, "w")
        for line in kept:
            self.fh.write(line + "\n")

    def write(self, obj: dict) -> None:
        self.fh.write(json.dumps(obj) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()
