"""The one base every model's handler builds on.

It loads the artifact named in the archive's manifest (checking its sha256) with the runtime of
its format (TorchScript, ONNX Runtime or AOTInductor), sets the worker's thread count, and runs a
batch as: ``preprocess`` each request → one ``inference`` call on all the good ones →
``postprocess`` each result. A request that fails validation gets its own 4xx and JSON error body;
its batch-mates are still answered.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from handlers import oip
from handlers.artifact import InputSpec, input_specs, load_artifact, read_manifest
from handlers.errors import MalformedRequest, RequestError
from handlers.inputs import read_body

log = logging.getLogger(__name__)


class Decoded(NamedTuple):
    """One request's input: a tensor per model input (one tensor, or a tuple in the manifest's input
    order), whose first dimension holds the request's instances."""

    inputs: torch.Tensor | tuple[torch.Tensor, ...]
    single: bool  # the request sent one instance (answer with an object, not a list)
    info: Any = None  # what the answer needs besides the model output (e.g. which texts were truncated)

    @property
    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The inputs as a tuple, one tensor per model input."""
        return self.inputs if isinstance(self.inputs, tuple) else (self.inputs,)

    @property
    def tensor(self) -> torch.Tensor:
        """The input of a one-input model."""
        (only,) = self.tensors
        return only


class ManifestHandler:
    """Serve an artifact exported by ``export/``; subclasses say how bytes become tensors.

    Example:
        class DigitsClassifier(ManifestHandler):
            def preprocess(self, body, content_type): ...  # -> Decoded
            def postprocess(self, output): ...            # rows of one request -> list of items
    """

    # Open Inference Protocol (v2): numeric tensor data goes to preprocess as JSON under
    # ``v2_batch_key``; BYTES elements as strings under ``v2_bytes_key`` if set, else each element
    # is one body of ``v2_bytes_type`` (base64 in JSON when that is not a text type).
    v2_batch_key = ""
    v2_bytes_key = ""
    v2_bytes_type = ""

    def __init__(self):
        self.manifest: dict = {}
        self.model: Any = None
        self.input_specs: list[InputSpec] = []
        self.input_spec: InputSpec | None = None
        self.initialized = False

    def initialize(self, context) -> None:
        """Load once per worker: manifest, threads, then the verified artifact."""
        folder = Path(context.system_properties["model_dir"])
        settings = (getattr(context, "model_yaml_config", None) or {}).get("handler", {})
        self.configure(read_manifest(folder), folder, settings)
        threads = int(settings.get("threads", os.environ.get("TS_KIT_THREADS", 1)))
        set_threads(threads)
        self.model = load_artifact(folder, self.manifest, threads)
        self.initialized = True
        log.info("loaded %s %s (%s)", self.manifest["name"], self.manifest["version"], self.manifest["format"])

    def configure(self, manifest: dict, folder: Path, settings: dict | None = None) -> None:
        """Read the manifest and the model's extra files; export calls this too, without a model."""
        self.manifest = manifest
        self.input_specs = input_specs(manifest)
        self.input_spec = self.input_specs[0]  # the input of one-input models

    def handle(self, data: list[dict], context) -> list:
        """TorchServe's entry point: one answer per request, in order."""
        answers: list = [None] * len(data)
        good: list[tuple[int, Decoded]] = []
        v2: dict[int, oip.V2Request] = {}
        for idx, row in enumerate(data):
            body, is_v2 = None, False
            try:
                body, content_type = read_body(row, context, idx)
                length = oip.header_length(context, idx)
                is_v2 = oip.looks_like_v2(body, length)
                if is_v2:
                    v2[idx] = oip.parse_request(body, length)
                    decoded = self.preprocess_v2(v2[idx])
                else:
                    decoded = self.preprocess(body, content_type)
                self.check_inputs(decoded)
                good.append((idx, decoded))
            except RequestError as err:
                answers[idx] = err.to_json() | ({"error": err.message} if is_v2 else {})
                context.set_response_status(err.status, err.phrase, idx)
                context.set_response_content_type(idx, "application/json")
        # One line per batch: shows which requests were merged (the reliability tests read it).
        log.info("batch of %d requests, %d rejected", len(data), len(data) - len(good))
        if good:
            outputs = self.inference(self.collate([d.tensors for _, d in good]))
            sizes = [d.tensors[0].shape[0] for _, d in good]
            for (idx, decoded), rows in zip(good, torch.split(outputs, sizes), strict=True):
                items = self.postprocess(self.request_output(rows, decoded))
                if idx in v2:
                    answers[idx] = oip.response(self.manifest["name"], self.manifest["version"], v2[idx].id, items)
                else:
                    answers[idx] = items[0] if decoded.single else items
                context.set_response_content_type(idx, "application/json")
        return answers

    def preprocess(self, body: Any, content_type: str) -> Decoded:
        """One request body → its input tensor(s); raise a RequestError for bad input."""
        raise NotImplementedError

    def preprocess_v2(self, request: oip.V2Request) -> Decoded:
        """A v2 request → its input tensor(s), through ``preprocess`` so both protocols validate alike."""
        _, value = request.only_input()
        if isinstance(value, np.ndarray):
            return self.preprocess({self.v2_batch_key: value.tolist()}, "application/json")._replace(single=False)
        if self.v2_bytes_key:
            texts = [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v) for v in value]
            return self.preprocess({self.v2_bytes_key: texts}, "application/json")._replace(single=False)
        parts = [self.preprocess(self._v2_element(v), self.v2_bytes_type) for v in value]
        if not parts:
            raise MalformedRequest("the v2 BYTES input holds no elements")
        joined = self.collate([p.tensors for p in parts])
        return Decoded(joined if len(joined) > 1 else joined[0], False)

    def _v2_element(self, value: Any) -> Any:
        """One BYTES element as the body ``preprocess`` expects for ``v2_bytes_type``."""
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        if self.v2_bytes_type.startswith("text/"):
            return str(value)
        try:
            return base64.b64decode(str(value), validate=True)
        except binascii.Error:
            raise MalformedRequest(f"BYTES elements in JSON must be base64 ({self.v2_bytes_type})") from None

    def check_inputs(self, decoded: Decoded) -> None:
        """Raise InvalidInput unless each tensor matches its input spec (dtype, shape, bounds)."""
        tensors = decoded.tensors
        if len(tensors) != len(self.input_specs) or len({t.shape[0] for t in tensors}) != 1:
            # The handler's own code disagrees with its manifest: a bug, not the client's fault.
            raise ValueError(
                f"{type(self).__name__}.preprocess gave shapes {[list(t.shape) for t in tensors]}; "
                f"the manifest names inputs {[s.name for s in self.input_specs]} with one batch size"
            )
        for spec, tensor in zip(self.input_specs, tensors, strict=True):
            spec.check(tensor)

    def collate(self, requests: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
        """Join the good requests of a batch along the first dimension, input by input; sizes that
        differ between requests (e.g. sequence lengths) are padded to the longest with the input's
        ``pad`` value."""
        return tuple(pad_and_cat([r[i] for r in requests], spec.pad) for i, spec in enumerate(self.input_specs))

    def inference(self, batch: tuple[torch.Tensor, ...] | torch.Tensor) -> torch.Tensor:
        """The model on the whole batch, in chunks no larger than the largest batch verified at
        export (several full requests can exceed it; an exported graph is only checked up to it)."""
        tensors = batch if isinstance(batch, tuple) else (batch,)
        size, step = tensors[0].shape[0], self.max_batch() or tensors[0].shape[0]
        with torch.inference_mode():
            if size <= step:
                return self.model(*tensors)
            return torch.cat([self.model(*(t[i : i + step] for t in tensors)) for i in range(0, size, step)])

    def max_batch(self) -> int | None:
        """The upper bound of the first input's first (batch) dimension in the manifest."""
        first = self.input_specs[0].shape[0] if self.input_specs else None
        return self.input_specs[0].bounds(first)[1] if isinstance(first, str) else None

    def request_output(self, rows: torch.Tensor, decoded: Decoded) -> Any:
        """What ``postprocess`` gets for one request: its output rows. A handler whose answer also
        depends on the request (``decoded.info``) pairs them here."""
        return rows

    def postprocess(self, output: Any) -> list:
        """The model output rows of one request → one JSON-able item per row."""
        raise NotImplementedError


def pad_and_cat(tensors: list[torch.Tensor], value: float = 0) -> torch.Tensor:
    """Concatenate along the first dimension, padding every other dimension to the largest size."""
    if len(tensors) == 1:
        return tensors[0]
    if len({t.shape[1:] for t in tensors}) == 1:
        return torch.cat(tensors)
    widths = [max(t.shape[d] for t in tensors) for d in range(1, tensors[0].dim())]
    out = tensors[0].new_full((sum(t.shape[0] for t in tensors), *widths), value)
    start = 0
    for t in tensors:
        out[(slice(start, start + t.shape[0]), *(slice(0, s) for s in t.shape[1:]))] = t
        start += t.shape[0]
    return out


def set_threads(threads: int) -> None:
    """Give the worker a fixed number of threads: TorchServe never does, so every worker would
    otherwise use every core and several workers would fight over them."""
    torch.set_num_threads(max(1, threads))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # Only settable before the first parallel work; keep what is there.
        pass
