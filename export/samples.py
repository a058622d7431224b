"""Sample inputs: committed request bodies, read the way TorchServe hands them to a handler."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONTENT_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".json": "application/json",
    ".csv": "text/csv",
    ".txt": "text/plain",
    ".wav": "audio/wav",
    ".npy": "application/octet-stream",
}


@dataclass(frozen=True)
class Sample:
    """One committed request body."""

    path: Path
    content_type: str
    raw: bytes

    @classmethod
    def read(cls, path: Path, content_type: str | None = None) -> Sample:
        """Read a sample file; its content type is the spec's, else follows from its extension."""
        return cls(path, content_type or content_type_of(path), path.read_bytes())

    @property
    def value(self) -> Any:
        """The body as a handler receives it (see ts/protocol/otf_message_handler.py)."""
        return torchserve_value(self.raw, self.content_type)


def content_type_of(path: Path) -> str:
    """The content type a client would send ``path`` with, from its extension."""
    return CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")


def torchserve_value(raw: bytes, content_type: str) -> Any:
    """Parse a body as TorchServe's worker does: JSON parsed, text decoded, anything else bytes
    (the one copy: tests, fuzzing and bench hand handlers what TorchServe would)."""
    try:
        if content_type == "application/json":
            return json.loads(raw.decode("utf-8"))
        if content_type.startswith("text"):
            return raw.decode("utf-8")
    # What decoding raises: bad UTF-8 or JSON (ValueErrors), JSON nested past Python's recursion
    # limit. TorchServe forwards any undecodable payload as bytes; so do we.
    except (ValueError, RecursionError):
        pass
    return raw
