"""The request bodies every system gets: each model's committed samples, read once."""

from __future__ import annotations

from export.samples import Sample
from export.spec import load_spec


def payloads(model: str) -> list[Sample]:
    """The model's samples (those its spec.yaml lists), in a stable order."""
    return [Sample.read(path) for path in load_spec(model).sample_paths()]
