"""The sample requests an archive carries: the files its manifest lists (staged under ``samples/`` by
export/archive.py)."""

from __future__ import annotations

import json
import mimetypes
import zipfile
from pathlib import Path

try:  # the project's own table; the container image carries only client/, so fall back to the stdlib's
    from export.samples import CONTENT_TYPES
except ImportError:  # pragma: no cover - exercised in the image
    CONTENT_TYPES = {}


def content_type(name: str) -> str:
    """A sample's content type, from its extension (archives whose manifest does not say)."""
    suffix = Path(name).suffix.lower()
    return CONTENT_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def archive_samples(mar: Path) -> list[tuple[str, bytes, str]]:
    """``(file name, body, content type)`` for every sample request the archive's manifest lists
    (its spec's samples; never the expected answers or other files under ``samples/``)."""
    with zipfile.ZipFile(mar) as z:
        listed = json.loads(z.read("manifest.json")).get("samples", [])
        entries = [(e, None) if isinstance(e, str) else (e["path"], e.get("content_type")) for e in listed]
        return [(path, z.read(path), ctype or content_type(path)) for path, ctype in entries]
