"""Turning one request's body into numbers, with errors that say what is expected.

TorchServe hands a handler each request as a dict: the body under ``body`` or ``data`` (or under
its form field name for multipart), already parsed when the content type is exactly
``application/json``, decoded to ``str`` for ``text/*``, raw bytes otherwise.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from handlers.errors import InvalidInput, MalformedRequest, UnsupportedMediaType

# An 8-bit image this large is already far beyond any model here; refusing it before decoding
# keeps a small "decompression bomb" PNG from costing gigabytes of memory.
MAX_IMAGE_PIXELS = 4096 * 4096
# Pillow can decode dozens of formats; only these two are accepted, so no other decoder ever runs.
IMAGE_FORMATS = ("PNG", "JPEG")
SEND_A_BODY = "POST the input with a Content-Type header, e.g. image/png or application/json"


def read_body(row: dict, context: Any, idx: int) -> tuple[Any, str]:
    """The body of request ``idx`` and its content type (lower case, no parameters)."""
    for name in ("data", "body", *row.keys()):
        if name in row:
            break
    else:
        raise MalformedRequest(f"empty request: no body and no form field; {SEND_A_BODY}")
    value = row[name]
    header = context.get_request_header(idx, name) if context and context.request_processor else None
    content_type = header.get("content-type", "") if isinstance(header, dict) else ""
    content_type = (content_type or "").split(";")[0].strip().lower()
    if value is None or (isinstance(value, (bytes, bytearray, str)) and len(value) == 0):
        # TorchServe routes every HTTP method on /predictions to the model: a GET lands here.
        raise MalformedRequest(f"empty request body; {SEND_A_BODY}")
    return value, content_type


def parse_json(value: Any) -> Any:
    """The JSON document in ``value`` (TorchServe leaves invalid JSON as raw bytes)."""
    if isinstance(value, (dict, list)):
        return value
    try:
        text = value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else value
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise MalformedRequest(f"body is not valid JSON: {err}") from None
    except RecursionError:  # e.g. 100,000 nested "[": Python's parser gives up, the worker must not.
        raise MalformedRequest("body is not valid JSON: nested too deeply") from None


def json_field(doc: Any, names: tuple[str, ...], expected: str) -> tuple[str, Any]:
    """The first of ``names`` present in the JSON object ``doc``, and its value."""
    if isinstance(doc, dict):
        for name in names:
            if name in doc:
                return name, doc[name]
    keys = " or ".join(f'"{n}"' for n in names)
    got = f"keys {sorted(doc)}" if isinstance(doc, dict) else f"a JSON {type(doc).__name__}"
    raise MalformedRequest(f"expected a JSON object with {keys} ({expected}), got {got}")


def numeric_array(value: Any, field: str, expected: str) -> np.ndarray:
    """A nested list of numbers as a float32 array; rejects strings, booleans, objects, ragged lists."""
    try:
        array = np.asarray(value)
    except ValueError:
        raise InvalidInput(f'"{field}" must be {expected}; got a ragged (or too deeply) nested list') from None
    if array.dtype.kind not in "iuf" or array.size == 0:
        kind = "an empty list" if array.size == 0 else f"values of type {_kind_name(array)}"
        raise InvalidInput(f'"{field}" must be {expected}; got {kind}')
    with np.errstate(over="ignore"):  # 1e39 becomes inf in float32: refused just below
        array = array.astype(np.float32)
    if not np.isfinite(array).all():
        raise InvalidInput(f'"{field}" must be {expected}; got NaN or Infinity (or a number beyond float32)')
    return array


def _kind_name(array: np.ndarray) -> str:
    return {"b": "boolean", "U": "string", "S": "bytes", "O": "object or mixed"}.get(array.dtype.kind, str(array.dtype))


def decode_image(value: Any, size: tuple[int, int]) -> np.ndarray:
    """Image bytes as a grayscale uint8 array resized to ``size`` (width, height)."""
    from PIL import Image  # Pillow is imported only by the image models that need it.

    if not isinstance(value, (bytes, bytearray)):
        raise UnsupportedMediaType("expected image bytes (image/png or image/jpeg)")
    try:
        with Image.open(io.BytesIO(value), formats=IMAGE_FORMATS) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise InvalidInput(f"image is {width}x{height} pixels; at most {MAX_IMAGE_PIXELS} pixels are accepted")
            gray = image.convert("L")
            if gray.size != size:
                gray = gray.resize(size, Image.Resampling.BOX)
            return np.asarray(gray, dtype=np.uint8)
    except Image.DecompressionBombError as err:  # Pillow's own limit, checked as it reads the header
        raise InvalidInput(f"image is too large ({err}); at most {MAX_IMAGE_PIXELS} pixels are accepted") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise MalformedRequest(f"body is not a readable PNG or JPEG image ({type(err).__name__})") from None


def parse_csv(value: Any, columns: tuple[str, ...]) -> np.ndarray:
    """CSV text with an optional header row naming ``columns``, as a float32 [rows, columns] array."""
    text = value.decode("utf-8", errors="replace") if isinstance(value, (bytes, bytearray)) else str(value)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if lines and lines[0].replace(" ", "").lower() == ",".join(columns):
        lines = lines[1:]
    rows = []
    for number, line in enumerate(lines, start=1):
        cells = line.split(",")
        if len(cells) != len(columns):
            raise InvalidInput(
                f"CSV row {number} has {len(cells)} values; expected {len(columns)} ({','.join(columns)})"
            )
        try:
            rows.append([float(c) for c in cells])
        except ValueError:
            raise InvalidInput(f"CSV row {number} is not all numbers: {line[:80]!r}") from None
        if not np.isfinite(rows[-1]).all():
            raise InvalidInput(f"CSV row {number} holds NaN or Infinity; expected finite numbers: {line[:80]!r}")
    if not rows:
        raise MalformedRequest(f"CSV body has no data rows; expected a header {','.join(columns)} and rows")
    return np.asarray(rows, dtype=np.float32)
