"""The one base every model's handler builds on.

It loads the artifact named in the archive's manifest (checking its sha256), sets the worker's
thread count, and runs a batch as: ``preprocess`` each request → one ``inference`` call on all
the good ones → ``postprocess`` each result. A request that fails validation gets its own 4xx
and JSON error body; its batch-mates are still answered.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, NamedTuple

import torch

from handlers.artifact import InputSpec, load_artifact, read_manifest
from handlers.errors import RequestError
from handlers.inputs import read_body

log = logging.getLogger(__name__)


class Decoded(NamedTuple):
    """One request's input: a tensor whose first dimension holds its instances."""

    tensor: torch.Tensor
    single: bool  # the request sent one instance (answer with an object, not a list)


class ManifestHandler:
    """Serve an artifact exported by ``export/``; subclasses say how bytes become tensors.

    Example:
        class DigitsClassifier(ManifestHandler):
            def preprocess(self, body, content_type): ...  # -> Decoded
            def postprocess(self, output): ...            # rows of one request -> list of items
    """

    def __init__(self):
        self.manifest: dict = {}
        self.model: Any = None
        self.input_spec: InputSpec | None = None
        self.initialized = False

    def initialize(self, context) -> None:
        """Load once per worker: manifest, threads, then the verified artifact."""
        folder = Path(context.system_properties["model_dir"])
        settings = (getattr(context, "model_yaml_config", None) or {}).get("handler", {})
        self.configure(read_manifest(folder), folder, settings)
        set_threads(int(settings.get("threads", os.environ.get("TS_KIT_THREADS", 1))))
        self.model = load_artifact(folder, self.manifest)
        self.initialized = True
        log.info("loaded %s %s (%s)", self.manifest["name"], self.manifest["version"], self.manifest["format"])

    def configure(self, manifest: dict, folder: Path, settings: dict | None = None) -> None:
        """Read the manifest and the model's extra files; export calls this too, without a model."""
        self.manifest = manifest
        self.input_spec = InputSpec.from_dict(manifest["inputs"][0])

    def handle(self, data: list[dict], context) -> list:
        """TorchServe's entry point: one answer per request, in order."""
        answers: list = [None] * len(data)
        good: list[tuple[int, Decoded]] = []
        for idx, row in enumerate(data):
            try:
                decoded = self.preprocess(*read_body(row, context, idx))
                self.input_spec.check(decoded.tensor)
                good.append((idx, decoded))
            except RequestError as err:
                answers[idx] = err.to_json()
                context.set_response_status(err.status, err.phrase, idx)
                context.set_response_content_type(idx, "application/json")
        # One line per batch: shows which requests were merged (the reliability tests read it).
        log.info("batch of %d requests, %d rejected", len(data), len(data) - len(good))
        if good:
            outputs = self.inference(self.collate([d.tensor for _, d in good]))
            sizes = [d.tensor.shape[0] for _, d in good]
            for (idx, decoded), rows in zip(good, torch.split(outputs, sizes), strict=True):
                items = self.postprocess(rows)
                answers[idx] = items[0] if decoded.single else items
                context.set_response_content_type(idx, "application/json")
        return answers

    def preprocess(self, body: Any, content_type: str) -> Decoded:
        """One request body → its input tensor; raise a RequestError for bad input."""
        raise NotImplementedError

    def collate(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        """Join the good requests of a batch along the first dimension."""
        return tensors[0] if len(tensors) == 1 else torch.cat(tensors)

    def inference(self, batch: torch.Tensor) -> torch.Tensor:
        """One model call for the whole batch."""
        with torch.inference_mode():
            return self.model(batch)

    def postprocess(self, output: torch.Tensor) -> list:
        """The model output rows of one request → one JSON-able item per row."""
        raise NotImplementedError


def set_threads(threads: int) -> None:
    """Give the worker a fixed number of threads: TorchServe never does, so every worker would
    otherwise use every core and several workers would fight over them."""
    torch.set_num_threads(max(1, threads))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # Only settable before the first parallel work; keep what is there.
        pass
