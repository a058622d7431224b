"""The sample requests an archive carries (``samples/`` inside the .mar, staged by export/archive.py)."""

from __future__ import annotations

import mimetypes
import zipfile
from pathlib import Path

try:  # the project's own table; the container image carries only client/, so fall back to the stdlib's
    from export.samples import CONTENT_TYPES
except ImportError:  # pragma: no cover - exercised in the image
    CONTENT_TYPES = {}

# Answers, not requests: never sent.
NOT_REQUESTS = {"expected.json", "labels.json"}


def content_type(name: str) -> str:
    """A sample's content type, from its extension."""
    suffix = Path(name).suffix.lower()
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def archive_samples(mar: Path) -> list[tuple[str, bytes, str]]:
    """``(file name, body, content type)`` for every file under ``samples/`` in the archive."""
    with zipfile.ZipFile(mar) as z:
        names = sorted(n for n in z.namelist() if n.startswith("samples/") and not n.endswith("/"))
        return [(n, z.read(n), content_type(n)) for n in names if Path(n).name not in NOT_REQUESTS]
