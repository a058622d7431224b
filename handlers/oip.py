"""Open Inference Protocol (KServe v2) requests and responses, decoded once at the edge.

With ``ts_open_inference_protocol=true`` TorchServe routes ``POST /v2/models/{model}/infer`` to the
handler with the v2 body untouched: JSON (``{"id", "inputs": [{"name", "shape", "datatype",
"data"}]}``), or with the binary extension Triton's clients use by default, a JSON header of
``Inference-Header-Content-Length`` bytes followed by the raw tensors. ``parse_request`` checks every
field's type and every size against the model's limits *before* it allocates anything, and gives
typed ``V2Tensor``s; ``response`` encodes a handler's answers under the output names it declares.
(Over 250 lines: the whole v2 wire format, both directions, in one place.)
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

from handlers.errors import InvalidInput, MalformedRequest, excerpt
from handlers.schema import MAX_DEPTH

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
DATATYPES = (*NUMERIC, "BYTES")
# torch dtype name -> v2 datatype (the manifest's dtypes, for the outputs a handler answers with).
DTYPES = {"bool": "BOOL", "uint8": "UINT8", "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64"}
DTYPES |= {"float16": "FP16", "float32": "FP32", "float64": "FP64"}
HEADER_LENGTH = "Inference-Header-Content-Length"
MAX_NAME = 256  # characters of an input name or request id
V2_MARK = re.compile(r'"inputs"\s*:\s*\[')  # v2's "inputs" is a list (the tensor handler's REST form: an object)


@dataclass(frozen=True)
class Limits:
    """What one request may hold: inputs, numeric elements per input, BYTES elements per input."""

    inputs: int
    elements: int
    items: int


@dataclass(frozen=True)
class V2Tensor:
    """One decoded v2 input: numeric ``data`` is an array of ``shape``; BYTES ``data`` is a flat list
    of ``bytes`` (binary extension) or ``str`` (JSON) elements."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: Any


@dataclass(frozen=True)
class V2Request:
    """A parsed v2 inference request: its id and its inputs by name, in the order sent."""

    id: str | None
    inputs: dict[str, V2Tensor]

    def only(self) -> V2Tensor:
        """The request's one input (for models whose v2 form is one tensor)."""
        if len(self.inputs) != 1:
            raise InvalidInput(f"expected exactly one input tensor, got {len(self.inputs)}")
        return next(iter(self.inputs.values()))


def datatype_of(dtype: str) -> str:
    """The v2 datatype of a torch dtype name (``float32`` -> ``FP32``); BYTES for anything else."""
    return DTYPES.get(str(dtype).removeprefix("torch."), "BYTES")


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
        return head.lstrip().startswith("{") and V2_MARK.search(head) is not None
    return False


def parse_request(body: Any, limits: Limits, header_length: str | None = None) -> V2Request:
    """The v2 request in ``body``; raises a RequestError saying what is wrong."""
    doc, binary = _split(body, header_length)
    if not (isinstance(doc, dict) and isinstance(doc.get("inputs"), list)):
        raise MalformedRequest('a v2 request is a JSON object with an "inputs" list')
    request_id = doc.get("id")
    if request_id is not None and not (isinstance(request_id, str) and len(request_id) <= MAX_NAME):
        raise MalformedRequest(f'"id" must be a string of at most {MAX_NAME} characters')
    if not isinstance(doc.get("parameters", {}), dict):
        raise MalformedRequest('"parameters" must be a JSON object')
    if not 1 <= len(doc["inputs"]) <= limits.inputs:
        raise InvalidInput(f"a request holds 1 to {limits.inputs} input tensors; got {len(doc['inputs'])}")
    inputs, offset = {}, 0
    for entry in doc["inputs"]:
        tensor, offset = _read_input(entry, binary, offset, limits)
        if tensor.name in inputs:
            raise MalformedRequest(f"input {excerpt(tensor.name)} is given twice")
        inputs[tensor.name] = tensor
    if offset != len(binary):
        raise MalformedRequest(f"{len(binary) - offset} bytes of binary data follow the last input's")
    return V2Request(request_id, inputs)


def _split(body: Any, header_length: str | None) -> tuple[Any, bytes]:
    """The JSON document and the binary data after it."""
    binary = b""
    if not isinstance(body, (bytes, bytearray, str)):
        return body, binary  # TorchServe parsed the whole body as JSON: no binary part follows
    if header_length is not None:
        if isinstance(body, str):
            body = body.encode("utf-8", "surrogatepass")
        digits = header_length.isascii() and header_length.isdigit() and len(header_length) <= 12
        if not (digits and int(header_length) <= len(body)):
            raise MalformedRequest(
                f"{HEADER_LENGTH} must be a byte count within the body, got {excerpt(header_length)}"
            )
        size = int(header_length)
        body, binary = bytes(body[:size]), bytes(body[size:])
    try:
        return json.loads(body), binary
    except (ValueError, RecursionError) as err:  # also: lone surrogates, integers over 4,300 digits
        raise MalformedRequest(f"v2 request header is not valid JSON ({type(err).__name__})") from None


def _read_input(entry: Any, binary: bytes, offset: int, limits: Limits) -> tuple[V2Tensor, int]:
    if not isinstance(entry, dict):
        raise MalformedRequest('each v2 input is an object with "name", "shape", "datatype" and "data"')
    name, datatype, shape = entry.get("name"), entry.get("datatype"), entry.get("shape")
    if not (isinstance(name, str) and 0 < len(name) <= MAX_NAME):
        raise MalformedRequest(f'each v2 input needs a "name": a string of 1 to {MAX_NAME} characters')
    where = f"input {excerpt(name)}"
    if datatype not in DATATYPES or not isinstance(datatype, str):
        raise MalformedRequest(f'{where}: "datatype" must be one of {", ".join(DATATYPES)}; got {excerpt(datatype)}')
    count = _count(shape, where, limits.items if datatype == "BYTES" else limits.elements)
    parameters = entry.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise MalformedRequest(f'{where}: "parameters" must be a JSON object')
    size = parameters.get("binary_data_size")
    if size is not None:
        if type(size) is not int or not 0 <= size <= len(binary) - offset:
            raise MalformedRequest(f"{where}: binary_data_size must be a byte count within the binary data")
        chunk, offset = binary[offset : offset + size], offset + size
        data = _split_bytes(chunk, where, count) if datatype == "BYTES" else _from_buffer(chunk, datatype, where, count)
    elif "data" in entry:
        data = _from_json(entry["data"], datatype, where, count)
    else:
        raise MalformedRequest(f'{where} has neither "data" nor binary data')
    if datatype != "BYTES":
        data = data.reshape(shape)
    return V2Tensor(name, datatype, tuple(shape), data), offset


def _count(shape: Any, where: str, most: int) -> int:
    """The exact element count of ``shape``, refused before anything is allocated."""
    if not (isinstance(shape, list) and len(shape) <= MAX_DEPTH and all(type(s) is int for s in shape)):
        raise MalformedRequest(f'{where}: "shape" must be a list of at most {MAX_DEPTH} integers')
    if any(s < 1 for s in shape):
        raise InvalidInput(f"{where}: every dimension of the shape must be at least 1")
    count = math.prod(shape)  # Python integers: exact, no wrap-around
    if count > most:
        raise InvalidInput(f"{where}: shape holds {excerpt(count, 24)} elements; at most {most} per request")
    return count


def _from_buffer(chunk: bytes, datatype: str, where: str, count: int) -> np.ndarray:
    itemsize = np.dtype(NUMERIC[datatype]).itemsize
    if len(chunk) != count * itemsize:
        raise InvalidInput(
            f"{where}: {len(chunk)} bytes of binary data; its shape and {datatype} need {count * itemsize}"
        )
    array = np.frombuffer(chunk, NUMERIC[datatype])
    return array.astype(bool) if datatype == "BOOL" else array


def _from_json(data: Any, datatype: str, where: str, count: int) -> Any:
    flat = _flatten(data, where, count)
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in flat):
            raise InvalidInput(f"{where}: BYTES data in JSON must be strings")
        return flat
    if datatype == "BOOL":
        ok = all(isinstance(v, bool) for v in flat)
    elif datatype.startswith("FP"):
        ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in flat)
    else:
        ok = all(isinstance(v, int) and not isinstance(v, bool) for v in flat)
    if not ok:
        kind = "true/false" if datatype == "BOOL" else "numbers" if datatype.startswith("FP") else "integers"
        raise InvalidInput(f"{where}: data must be {kind} for datatype {datatype}")
    try:
        with np.errstate(over="raise"):
            return np.array(flat, dtype=NUMERIC[datatype])
    except (OverflowError, FloatingPointError, ValueError):
        raise InvalidInput(f"{where}: a value is out of the range of {datatype}") from None


def _flatten(data: Any, where: str, count: int) -> list:
    """Nested lists as one flat list, refusing more than ``count`` values or deep nesting early."""
    flat, stack = [], [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, list):
            if depth >= MAX_DEPTH:
                raise InvalidInput(f"{where}: data is nested more than {MAX_DEPTH} deep")
            stack.extend((v, depth + 1) for v in reversed(value))
        else:
            flat.append(value)
            if len(flat) > count:
                break
    if len(flat) != count:
        got = f"more than {count}" if len(flat) > count else str(len(flat))
        raise InvalidInput(f"{where}: {got} values do not fill its shape ({count} elements)")
    return flat


def _split_bytes(chunk: bytes, where: str, count: int) -> list[bytes]:
    """BYTES tensors in the binary extension: each element is a 4-byte little-endian length + bytes."""
    items, pos = [], 0
    while pos < len(chunk) and len(items) < count:
        (length,) = struct.unpack_from("<I", chunk, pos) if pos + 4 <= len(chunk) else (len(chunk),)
        if pos + 4 + length > len(chunk):
            raise MalformedRequest(f"{where}: truncated BYTES element {len(items)}")
        items.append(chunk[pos + 4 : pos + 4 + length])
        pos += 4 + length
    if len(items) != count or pos != len(chunk):
        raise InvalidInput(f"{where}: its binary data does not hold exactly {count} BYTES elements")
    return items


def response(model: str, version: str, request_id: str | None, fields: dict[str, str], items: list[dict]) -> dict:
    """A v2 response: one output per declared field (name -> v2 datatype), batched over instances.
    BYTES, the same for every field: strings (or rectangular lists of strings) are sent as UTF-8
    elements of shape [n, ...]; any other value that does not form a rectangular tensor of the
    field's datatype (a null, an object, a ragged list) is sent as BYTES [n], one JSON text per instance."""
    outputs = [_output(name, datatype, [item.get(name) for item in items]) for name, datatype in fields.items()]
    answer = {"model_name": model, "model_version": version, "outputs": outputs}
    return answer | ({"id": request_id} if request_id else {})


def _output(name: str, datatype: str, values: list) -> dict:
    try:
        array = np.asarray(values) if None not in values else None
    except ValueError:  # ragged
        array = None
    if array is not None and datatype in NUMERIC and array.dtype.kind in "biuf":
        # Floats as computed (float32 would print 0.9 as 0.8999999761581421); others cast.
        cast = np.float64 if datatype.startswith("FP") else NUMERIC[datatype]
        data = array.astype(cast).reshape(-1).tolist()
        return {"name": name, "shape": list(array.shape), "datatype": datatype, "data": data}
    if array is not None and array.dtype.kind == "U" and _strings(values):  # UTF-8 elements, as sent
        return {"name": name, "shape": list(array.shape), "datatype": "BYTES", "data": array.reshape(-1).tolist()}
    data = [json.dumps(v, allow_nan=False) for v in values]
    return {"name": name, "shape": [len(values)], "datatype": "BYTES", "data": data}


def _strings(value: Any) -> bool:
    """Whether every leaf of a nested list is a string (numpy would turn mixed values into text)."""
    return all(_strings(v) for v in value) if isinstance(value, list) else isinstance(value, str)
