"""The request bodies every system gets, per model and corpus, read once.

A model folder offers its own corpora as ``models/<name>/bench/*.json`` (each
``{"content_type": ..., "requests": [body, ...], "targets": {...}}``; JSON bodies are sent as
JSON, text bodies as they are); a folder without them is benchmarked on its committed samples
(the corpus ``samples``). Nothing here knows which models exist.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
from pathlib import Path

from export.samples import Sample
from export.spec import load_spec

SAMPLES = "samples"


def corpus_files(model: str) -> dict[str, Path]:
    """The model folder's corpora: file stem -> path (empty when it offers none)."""
    folder = load_spec(model).folder / "bench"
    return {p.stem: p for p in sorted(folder.glob("*.json"))}


def corpora(model: str) -> list[str]:
    """The corpora a model is benchmarked on: its folder's, else its samples."""
    return list(corpus_files(model)) or [SAMPLES]


@functools.cache
def corpus_document(model: str, corpus: str) -> dict:
    """A corpus file, parsed once (``{}`` for the samples, which have no file)."""
    path = corpus_files(model).get(corpus)
    return json.loads(path.read_text()) if path else {}


def corpus_targets(model: str, corpus: str) -> dict:
    """What the corpus file says the served system must reach (``{}`` when nothing)."""
    return corpus_document(model, corpus).get("targets", {})


def corpus_baseline(model: str, corpus: str) -> dict:
    """The corpus file's ``baseline``: other model-config.yaml values (``settings``) under which the
    same archive is served beside the defaults and measured alike (``label`` says what they are);
    ``{}`` when the corpus has none."""
    return corpus_document(model, corpus).get("baseline", {})


@functools.cache
def payloads(model: str, corpus: str = SAMPLES) -> list[Sample]:
    """The bodies of one corpus in a stable order (the samples its spec.yaml lists by default)."""
    if corpus == SAMPLES:
        return load_spec(model).read_samples()
    document = corpus_document(model, corpus)
    content_type = document["content_type"]
    folder = _scratch() / model / corpus  # wrk sends files: one per body
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, body in enumerate(document["requests"]):
        raw = (json.dumps(body) if content_type.endswith("json") else body).encode()
        path = folder / f"{corpus}-{i:04d}"  # its name says where it came from in messages
        path.write_bytes(raw)
        out.append(Sample(path, content_type, raw))
    return out


@functools.cache
def _scratch() -> Path:
    path = Path(tempfile.mkdtemp(prefix="bench-corpora-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path
