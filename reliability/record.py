"""What the reliability tests saw, for docs/RELIABILITY.md.

Tests call ``record(section, ...)`` with the numbers and statuses they observed. Nothing is written
unless ``RELIABILITY_RECORD`` names a file (``make reliability`` sets it), so `make test` is unaffected.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

ENV = "RELIABILITY_RECORD"


def record(section: str, **fields) -> None:
    """Append one observation (JSON-able fields) to the record file, if one is set."""
    path = os.environ.get(ENV)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"section": section, **fields}, default=str) + "\n")


def read_records(path: Path) -> list[dict]:
    """Every observation in a record file, in order."""
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
