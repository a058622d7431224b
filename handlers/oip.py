"""Open Inference Protocol (KServe v2) requests and responses, for every model's handler.

With ``ts_open_inference_protocol=true`` TorchServe routes ``POST /v2/models/{model}/infer`` to the
handler with the v2 body untouched: JSON (``{"id", "inputs": [{"name", "shape", "datatype",
"data"}]}``) or, with the binary extension that Triton's clients use by default, a JSON header of
``Inference-Header-Content-Length`` bytes followed by the raw tensors. This module turns that into
arrays and the handler's answers back into v2 ``outputs``; the handler's own preprocessing does the
validation, so both protocols accept and refuse the same things.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from handlers.errors import InvalidInput, MalformedRequest

NUMERIC = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass
class V2Request:
    """A parsed v2 inference request: input name -> array (numeric) or list of bytes (BYTES)."""

    id: str | None
    inputs: dict[str, Any]

    def only_input(self) -> tuple[str, Any]:
        """The request's one input (every model here takes one)."""
        if len(self.inputs) != 1:
            raise InvalidInput(f"expected exactly one input tensor, got {sorted(self.inputs) or 'none'}")
        return next(iter(self.inputs.items()))


def header_length(context: Any, idx: int) -> str | None:
    """The binary extension's ``Inference-Header-Content-Length`` of request ``idx``, if sent."""
    if context is None or not context.request_processor:
        return None
    for name in (HEADER_LENGTH, HEADER_LENGTH.lower()):
        value = context.get_request_header(idx, name)
        if value is not None:
            return value
    return None


def looks_like_v2(body: Any, header_length: str | None = None) -> bool:
    """Whether a body is meant as a v2 request (a JSON object with an ``inputs`` list)."""
    if header_length is not None:
        return True
    if isinstance(body, dict):
        return isinstance(body.get("inputs"), list)
    if isinstance(body, (bytes, bytearray, str)):
        head = body[:4096].decode("utf-8", errors="replace") if isinstance(body, (bytes, bytearray)) else body[:4096]
        return head.lstrip().startswith("{") and '"inputs"' in head
    return False


def parse_request(body: Any, header_length: str | None = None) -> V2Request | None:
    """The v2 request in ``body``, or None when the body is not one (a plain REST request)."""
    if not looks_like_v2(body, header_length):
        return None
    binary = b""
    if header_length is not None and isinstance(body, (bytes, bytearray)):
        try:
            size = int(header_length)
        except ValueError:
            raise MalformedRequest(f"{HEADER_LENGTH} must be an integer, got {header_length!r}") from None
        body, binary = bytes(body[:size]), bytes(body[size:])
    doc = body
    if isinstance(body, (bytes, bytearray, str)):
        text = body.decode("utf-8", errors="replace") if isinstance(body, (bytes, bytearray)) else body
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as err:
            raise MalformedRequest(f"v2 request header is not valid JSON: {err}") from None
    if not (isinstance(doc, dict) and isinstance(doc.get("inputs"), list)):
        raise MalformedRequest('a v2 request is a JSON object with an "inputs" list')
    inputs, offset = {}, 0
    for spec in doc["inputs"]:
        name, value, offset = _read_input(spec, binary, offset)
        inputs[name] = value
    return V2Request(doc.get("id"), inputs)


def _read_input(spec: Any, binary: bytes, offset: int) -> tuple[str, Any, int]:
    if not isinstance(spec, dict) or not {"name", "shape", "datatype"} <= set(spec):
        raise MalformedRequest('each v2 input needs "name", "shape", "datatype" and "data"')
    name, shape, datatype = spec["name"], spec["shape"], spec["datatype"]
    if not (isinstance(shape, list) and all(isinstance(s, int) and s >= 0 for s in shape)):
        raise InvalidInput(f"input {name!r}: shape must be a list of non-negative integers, got {shape!r}")
    if datatype != "BYTES" and datatype not in NUMERIC:
        raise InvalidInput(f"input {name!r}: datatype {datatype!r} is not a v2 datatype ({', '.join(NUMERIC)}, BYTES)")
    size = (spec.get("parameters") or {}).get("binary_data_size")
    count = int(np.prod(shape)) if shape else 1
    if size is not None:
        chunk = binary[offset : offset + int(size)]
        if len(chunk) != int(size):
            raise MalformedRequest(f"input {name!r}: binary data is shorter than its binary_data_size {size}")
        offset += int(size)
        value = _split_bytes(chunk, name) if datatype == "BYTES" else np.frombuffer(chunk, NUMERIC[datatype])
    elif "data" in spec:
        value = _flatten(spec["data"]) if datatype == "BYTES" else _numeric(spec["data"], datatype, name)
    else:
        raise MalformedRequest(f'input {name!r} has neither "data" nor binary data')
    if len(value) != count:
        raise InvalidInput(f"input {name!r}: {len(value)} values do not fill shape {shape}")
    if datatype != "BYTES":
        value = value.reshape(shape)
    return name, value, offset


def _numeric(data: Any, datatype: str, name: str) -> np.ndarray:
    try:
        array = np.asarray(data)
    except ValueError:
        raise InvalidInput(f"input {name!r}: data is a ragged nested list") from None
    if array.dtype.kind not in "biuf":
        raise InvalidInput(f"input {name!r}: data must be numbers for datatype {datatype}")
    return array.astype(NUMERIC[datatype]).reshape(-1)


def _flatten(data: Any) -> list:
    if isinstance(data, list):
        return [item for part in data for item in _flatten(part)]
    return [data]


def _split_bytes(chunk: bytes, name: str) -> list[bytes]:
    """BYTES tensors in the binary extension: each element is a 4-byte little-endian length + bytes."""
    items, pos = [], 0
    while pos < len(chunk):
        if pos + 4 > len(chunk):
            raise MalformedRequest(f"input {name!r}: truncated BYTES element")
        (length,) = struct.unpack_from("<I", chunk, pos)
        items.append(chunk[pos + 4 : pos + 4 + length])
        pos += 4 + length
    return items


def response(model: str, version: str, request_id: str | None, items: list) -> dict:
    """A v2 response: one output per field of the handler's answers, batched over instances."""
    rows = [_fields(item) for item in items]
    outputs = []
    # A field only some answers carry (a note on a truncated text) has no tensor form: left out.
    for key in [k for k in rows[0] if all(k in row for row in rows)]:
        array = np.asarray([row[key] for row in rows])
        datatype = {"b": "BOOL", "i": "INT64", "u": "INT64", "f": "FP32"}.get(array.dtype.kind, "BYTES")
        data = array.reshape(-1).tolist() if datatype != "BYTES" else [str(v) for v in array.reshape(-1)]
        outputs.append({"name": key, "shape": list(array.shape), "datatype": datatype, "data": data})
    answer = {"model_name": model, "model_version": version, "outputs": outputs}
    return answer | ({"id": request_id} if request_id else {})


def _fields(item: Any) -> dict:
    """One answer as named fields: a list of records becomes one list per field (top-k), a dict of
    numbers becomes its values in order (per-channel errors)."""
    if isinstance(item, list) and item and isinstance(item[0], dict):
        return {key: [record[key] for record in item] for key in item[0]}
    if not isinstance(item, dict):
        return {"output": item}
    return {key: list(value.values()) if isinstance(value, dict) else value for key, value in item.items()}
