"""The one base every model's handler builds on: the handler contract (README, "Adding your own model").

It loads the artifact named in the archive's manifest (checking its sha256) with the runtime of its
format, and runs a batch as: decode each request (REST: ``decode(body, content_type)``; v2:
``oip.parse_request``, then numeric tensors by input name and each BYTES element through the same
``decode``) and ``check_inputs`` → one model call on all the good ones → ``encode`` each request's
rows into named fields per instance → REST: the fields object per instance; v2: one output per field.
Each request gets its own status: a RequestError its 4xx, any other exception its own 500 (logged
with the traceback); batch-mates are still answered.
(Over 250 lines: the one request flow every handler shares, kept in one file to be read top to bottom.)
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch

from handlers import batching, contract, device, oip
from handlers.artifact import load_artifact, read_manifest
from handlers.contract import Decoded, as_tuple, output_specs, pad_and_cat
from handlers.errors import InternalError, InvalidInput, RequestError, UnsupportedMediaType
from handlers.inputs import SEND_A_BODY, read_body
from handlers.schema import InputSpec, input_specs

__all__ = ["Decoded", "ManifestHandler", "pad_and_cat"]  # Decoded: what ``decode`` returns (handlers.contract)

log = logging.getLogger(__name__)
BATCH_HEADER = "X-Kit-Batch"  # "<n> requests, <m> rejected": the batch a request was answered in
VERSION_HEADER = "X-Kit-Model-Version"  # the manifest's version: which version answered (client/updates.py)
# A v2 input's elements when a dimension has no upper bound in the manifest (4 MB of float32).
UNBOUNDED_ELEMENTS = 1 << 20
NOT_FINITE = "the model's output for this input is not finite: inputs outside the range the model handles"


class ManifestHandler:
    """Serve an artifact exported by ``export/``; a custom format overrides two hooks.

    ``decode(body, content_type) -> Decoded``: one REST body (or one v2 BYTES element, with
    content type "") → tensors. ``encode(outputs, decoded) -> list[dict]``: one request's output
    rows → per instance, its answer's named fields, declared with their v2 datatypes in ``fields``.
    """

    v2_inputs: tuple[str, ...] = ()  # names of the v2 input tensors (default: the manifest's inputs)
    fields: dict[str, str] = {}  # answer field -> v2 datatype, in order (default: the manifest's outputs)
    sequence: Any = None  # a declared `sequence:` (handlers/codec.py): windows called in turn, per request

    def __init__(self):
        self.manifest: dict = {}
        self.model: Any = None
        self.input_specs: list[InputSpec] = []
        self.empty_hint = SEND_A_BODY
        self.planner: batching.Planner | None = None
        self.placement = device.Placement(torch.device("cpu"))  # initialize: the worker's device
        self.initialized = False

    def initialize(self, context) -> None:
        """Load once per worker: manifest, threads, then the verified artifact."""
        folder = Path(context.system_properties["model_dir"])
        settings = (getattr(context, "model_yaml_config", None) or {}).get("handler", {})
        self.configure(read_manifest(folder), folder, settings)
        threads = int(settings.get("threads", 1))
        set_threads(threads)
        self.placement = device.placement(context.system_properties, settings, self.manifest)
        self.model = load_artifact(folder, self.manifest, threads, self.placement.device)
        # Length-aware groups; the cost model is timed here, once, on whole calls (to the device and back).
        self.planner = batching.Planner.for_model(self.manifest, settings, self.grouped)
        reset = self.manifest.get("reset")
        if reset and not callable(getattr(self.model, reset, None)):  # refuse to load, not 500 every request
            raise RuntimeError(
                f"{self.manifest['name']}: the manifest's reset {reset!r} is not a method of the artifact"
            )
        self.initialized = True
        name, version, fmt = self.manifest["name"], self.manifest["version"], self.manifest["format"]
        log.info("loaded %s %s (%s) on %s", name, version, fmt, self.placement.describe())

    def configure(self, manifest: dict, folder: Path, settings: dict | None = None) -> None:
        """Read the manifest and the model's extra files; export calls this too, without a model."""
        self.manifest = manifest
        self.input_specs = input_specs(manifest)
        hint = manifest.get("empty_hint")
        self.empty_hint = hint or SEND_A_BODY  # the spec's empty_hint (export writes a default)
        # A stateful model (reset before each request) or one whose batches differ from single calls.
        self.one_per_call = bool(manifest.get("reset")) or manifest.get("batching", True) is False
        self.v2_inputs = self.v2_inputs or tuple(s.name for s in self.input_specs)
        self.v2_limits = oip.Limits(len(self.v2_inputs), self.max_elements(), self.max_instances())

    def handle(self, data: list[dict], context) -> list[bytes]:
        """TorchServe's entry point: one JSON answer (UTF-8 bytes) per request, in order."""
        answers: list = [None] * len(data)
        good: list[tuple[int, Decoded, oip.V2Request | None]] = []
        for idx, row in enumerate(data):
            v2 = False
            try:
                body, content_type = read_body(row, context, idx, self.empty_hint)
                length = oip.header_length(context, idx)
                v2 = oip.looks_like_v2(body, length)
                good.append((idx, *self.decode_request(body, content_type, length, v2)))
            except Exception as err:  # noqa: BLE001 - the last line of defence: this request only
                answers[idx] = self.refuse(context, idx, err, v2)
        log.debug("batch of %d requests, %d rejected", len(data), len(data) - len(good))
        for idx in range(len(data)):
            context.set_response_header(idx, BATCH_HEADER, f"{len(data)} requests, {len(data) - len(good)} rejected")
            context.set_response_header(idx, VERSION_HEADER, str(self.manifest.get("version", "")))
        for (idx, decoded, request), outputs in zip(good, self.run(good, context), strict=True):
            answers[idx] = self.answer(context, idx, decoded, request, outputs)
        return answers

    def decode_request(self, body: Any, content_type: str, length: str | None, v2: bool) -> tuple[Decoded, Any]:
        """One request → its checked inputs, and its parsed v2 request (None for REST)."""
        request = oip.parse_request(body, self.v2_limits, length) if v2 else None
        try:
            decoded = self.preprocess_v2(request) if v2 else self.preprocess(body, content_type)
        except UnsupportedMediaType as err:  # the README's rule, whatever a handler wrote
            raise contract.unsupported(content_type, err.message) from None
        self.check_inputs(decoded)
        return decoded, request

    def run(self, good: list[tuple[int, Decoded, Any]], context=None) -> list:
        """Per good request: its output tensors, or the exception its model call raised. A failing
        batch is retried request by request, so one poisoned request fails alone."""
        if not good:
            return []
        if not self.one_per_call and len(good) > 1:
            try:
                outputs = self.grouped(self.collate([d.inputs for _, d, _ in good]), context)
                sizes = [d.inputs[0].shape[0] for _, d, _ in good]
                return list(zip(*(torch.split(o, sizes) for o in outputs), strict=True))
            except Exception:  # noqa: BLE001 - retried alone below; a real bug fails each request
                log.warning("model call failed for a batch of %d requests; retrying each alone", len(good))
        results = []
        for _, decoded, _ in good:
            try:
                if self.manifest.get("reset"):
                    getattr(self.model, self.manifest["reset"])()
                call = lambda batch: self.grouped(batch, context)  # noqa: E731 - one model call
                results.append(self.sequence(decoded.inputs, call) if self.sequence else call(decoded.inputs))
            except Exception as err:  # noqa: BLE001 - answered as this request's 500
                results.append(err)
        return results

    def grouped(self, batch: tuple[torch.Tensor, ...], context=None) -> tuple[torch.Tensor, ...]:
        """The model on a batch: one call, or with the length planner (handlers/batching.py) one
        call per group of rows of similar length, the outputs back in row order."""
        batch = self.placement.to_device(batch)  # once per batch; the outputs come back once
        if self.planner is None:
            return self.placement.to_host(self.inference(batch))
        outputs, stats = self.planner.run(batch, self.inference)
        batching.report(context, stats)
        return self.placement.to_host(outputs)

    def answer(self, context, idx: int, decoded: Decoded, request: oip.V2Request | None, outputs: Any) -> bytes:
        """One request's JSON answer (or its 500), with its status and content type set."""
        try:
            if isinstance(outputs, Exception):
                raise outputs
            if not contract.all_finite(outputs):  # finite input, overflowing model: the input's range, not a bug
                raise InvalidInput(NOT_FINITE)
            fields = self.encode(outputs, contract.with_info(decoded))
            if request is not None:  # v2: one output per declared field, from the fields themselves
                name, version = self.manifest["name"], self.manifest["version"]
                answer = oip.response(name, version, request.id, self.output_fields(), fields)
            else:
                items = [self.rest_item(f) for f in fields]
                answer = items[0] if decoded.single else items
            # Encoded here, once (TorchServe would encode it again): NaN/Infinity are not JSON, so
            # a handler that invents one gets this request's 500, never a broken body.
            body = json.dumps(answer, allow_nan=False).encode()
        except Exception as err:  # noqa: BLE001 - the last line of defence: this request only
            return self.refuse(context, idx, err, request is not None)
        context.set_response_content_type(idx, "application/json")
        return body

    def refuse(self, context, idx: int, err: Exception, v2: bool) -> bytes:
        """Request ``idx``'s error answer: its RequestError, or a logged 500 naming model and request."""
        if not isinstance(err, RequestError):
            request_id = context.get_request_id(idx) if context and context.request_ids else idx
            name = self.manifest.get("name", type(self).__name__)
            log.error("model %s, request %s: %s", name, request_id, type(err).__name__, exc_info=err)
            err = InternalError(f"model {name} failed on request {request_id} ({type(err).__name__}); see its log")
        context.set_response_status(err.status, err.phrase, idx)
        context.set_response_content_type(idx, "application/json")
        return json.dumps(err.to_json(v2)).encode()

    def decode(self, body: Any, content_type: str) -> Decoded:
        """Hook: one REST body, or one v2 BYTES element (``content_type`` "": bytes from the binary
        extension, str from JSON) → its input tensors; raise a RequestError for bad input."""
        raise NotImplementedError

    def encode(self, outputs: tuple[torch.Tensor, ...], decoded: Decoded) -> list[dict]:
        """Hook: one request's output rows (one tensor per model output; ``decoded.info`` holds one
        entry per instance) → per instance, a dict of the fields ``output_fields()`` declares."""
        names = [o["name"] for o in output_specs(self.manifest)]
        if len(names) != len(outputs):
            names = [f"output_{i}" for i in range(len(outputs))] if len(outputs) > 1 else names[:1]
        rows = [o.tolist() for o in outputs]
        return [{name: rows[i][n] for i, name in enumerate(names)} for n in range(outputs[0].shape[0])]

    def rest_item(self, fields: dict) -> Any:
        """One instance's REST answer: its fields object (a codec may declare another shape)."""
        return fields

    def preprocess(self, body: Any, content_type: str) -> Decoded:
        """One REST body → its input tensors (``decode``; the server's flow adds the 415 rule)."""
        return self.decode(body, content_type)

    def postprocess(self, outputs: tuple[torch.Tensor, ...], decoded: Decoded) -> list:
        """One request's REST items (export, bench and scaffold call this; the server too)."""
        return [self.rest_item(f) for f in self.encode(outputs, contract.with_info(decoded))]

    def preprocess_v2(self, request: oip.V2Request) -> Decoded:
        """A parsed v2 request → its input tensors: a numeric tensor per model input, by name; or
        one BYTES input whose elements each go through ``decode`` (content type "")."""
        bytes_inputs = [t for t in request.inputs.values() if t.datatype == "BYTES"]
        if len(request.inputs) == 1 and bytes_inputs and len(self.v2_inputs) == 1:
            tensor = self.v2_input(request, self.v2_inputs[0])
            return self.decode_elements(tensor, lambda element: self.decode(element, ""))
        unknown = set(request.inputs) - {s.name for s in self.input_specs}
        if unknown:
            raise InvalidInput(f"unknown input tensor(s); this model takes {[s.name for s in self.input_specs]}")
        tensors = [contract.numeric_tensor(spec, self.v2_input(request, spec.name)) for spec in self.input_specs]
        return Decoded(contract.same_batch(self.input_specs, tensors), False)

    def output_fields(self) -> dict[str, str]:
        """Answer field -> v2 datatype: ``fields``, or the manifest's outputs."""
        return self.fields or {o["name"]: oip.datatype_of(o["dtype"]) for o in output_specs(self.manifest)}

    def decode_elements(self, tensor: oip.V2Tensor, decode_one) -> Decoded:
        """A v2 BYTES input whose elements are each one REST body: each is decoded and checked
        against the manifest alone (so no element's size reaches collate), then they are joined."""
        parts = []
        for i, element in enumerate(tensor.data):
            try:
                part = decode_one(element)
                self.check_inputs(part)
            except RequestError as err:
                raise type(err)(f"input {tensor.name!r} element {i}: {err.message}") from None
            parts.append(part)
        return contract.joined(parts, self.collate)

    def check_inputs(self, decoded: Decoded) -> None:
        """Raise InvalidInput unless each tensor matches its input spec (dtype, shape, bounds)."""
        tensors = decoded.inputs
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

    def inference(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """The model on the whole batch, in chunks no larger than the largest batch verified at
        export (several full requests can exceed it; an exported graph is only checked up to it)."""
        size, step = batch[0].shape[0], self.max_instances(None) or batch[0].shape[0]
        with torch.inference_mode():
            chunks = [as_tuple(self.model(*(t[i : i + step] for t in batch))) for i in range(0, size, step)]
        return chunks[0] if len(chunks) == 1 else tuple(torch.cat(parts) for parts in zip(*chunks, strict=True))

    def max_instances(self, default: int | None = 64) -> int | None:
        """The upper bound of the first input's first (batch) dimension in the manifest."""
        first = self.input_specs[0].shape[0] if self.input_specs else None
        return (self.input_specs[0].bounds(first)[1] if isinstance(first, str) else None) or default

    def max_elements(self) -> int:
        """The most elements any one input may hold (its manifest bounds), for v2 requests."""
        return max((spec.max_elements(UNBOUNDED_ELEMENTS) for spec in self.input_specs), default=UNBOUNDED_ELEMENTS)

    def v2_input(self, request: oip.V2Request, name: str) -> oip.V2Tensor:
        """The request's input ``name`` (several named inputs map to the model's inputs by name)."""
        if name not in request.inputs or len(request.inputs) > len(self.v2_inputs):
            raise InvalidInput(
                f"expected the input tensor(s) {list(self.v2_inputs)}; got {len(request.inputs)} other(s)"
            )
        return request.inputs[name]


def set_threads(threads: int) -> None:
    """Give the worker a fixed number of threads: TorchServe never does, so every worker would
    otherwise use every core and several workers would fight over them."""
    torch.set_num_threads(max(1, threads))
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # Only settable before the first parallel work; keep what is there.
        pass
