"""The request bodies every system gets: each model's committed samples, read once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from export.samples import Sample
from export.spec import load_spec


@dataclass(frozen=True)
class Payload:
    """One request body as a client sends it."""

    name: str  # sample file name, for messages
    path: Path
    content_type: str
    raw: bytes


def payloads(model: str) -> list[Payload]:
    """The model's samples (those its spec.yaml lists), in a stable order."""
    out = []
    for path in load_spec(model).sample_paths():
        sample = Sample.read(path)
        out.append(Payload(path.name, path, sample.content_type, sample.raw))
    return out
