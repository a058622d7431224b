"""Turning one request's body into numbers, with errors that say what is expected.

TorchServe hands a handler each request as a dict: the body under ``body`` or ``data`` (or under
its form field name for multipart), already parsed when the content type is exactly
``application/json`` (a scalar body such as ``42`` arrives as an int; invalid JSON as raw bytes),
decoded to ``str`` for ``text/*``, raw bytes otherwise. Every parser here maps whatever its input
can make it raise to a RequestError (400/415/422).
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from handlers.errors import InvalidInput, MalformedRequest, RequestError, UnsupportedMediaType, excerpt
from handlers.guards import check_image_structure, decode_budget  # noqa: F401 - codecs import decode_budget here
from handlers.schema import MAX_DEPTH

# Pillow can decode dozens of formats; only these two are accepted, so no other decoder ever runs.
IMAGE_FORMATS = ("PNG", "JPEG")
SEND_A_BODY = "POST the input with a Content-Type header"


def read_body(row: dict, context: Any, idx: int, hint: str = SEND_A_BODY) -> tuple[Any, str]:
    """The body of request ``idx`` and its content type (lower case, no parameters)."""
    for name in ("data", "body", *row.keys()):
        if name in row:
            break
    else:
        raise MalformedRequest(f"empty request: no body and no form field; {hint}")
    value = row[name]
    header = context.get_request_header(idx, name) if context and context.request_processor else None
    content_type = header.get("content-type", "") if isinstance(header, dict) else ""
    content_type = (content_type or "").split(";")[0].strip().lower()
    if value is None or (isinstance(value, (bytes, bytearray, str)) and len(value) == 0):
        # TorchServe routes every HTTP method on /predictions to the model: a GET lands here.
        raise MalformedRequest(f"empty request body; {hint}")
    return value, content_type


def parse_json(value: Any) -> Any:
    """The JSON document in ``value``: TorchServe's parse (any JSON value), or raw bytes/str."""
    if not isinstance(value, (bytes, bytearray, str)):
        return value  # already parsed by TorchServe: an object, array, number, boolean
    try:
        text = value.decode("utf-8") if isinstance(value, (bytes, bytearray)) else value
        return json.loads(text)
    except RecursionError:  # e.g. 100,000 nested "[": Python's parser gives up, the worker must not.
        raise MalformedRequest("body is not valid JSON: nested too deeply") from None
    except ValueError as err:  # also UnicodeDecodeError, and integers over 4,300 digits
        raise MalformedRequest(f"body is not valid JSON ({excerpt(str(err), 80)})") from None


def json_kind(value: Any) -> str:
    """How a JSON value reads in an error message: "an object", "a number", "null", ..."""
    if value is None:
        return "null"
    kinds = {bool: "a boolean", str: "a string", list: "an array", dict: "an object"}
    return kinds.get(type(value), "a number")


def json_field(doc: Any, names: tuple[str, ...], expected: str) -> tuple[str, Any]:
    """The first of ``names`` present in the JSON object ``doc``, and its value."""
    if isinstance(doc, dict):
        for name in names:
            if name in doc:
                return name, doc[name]
    keys = " or ".join(f'"{n}"' for n in names)
    got = f"keys {excerpt(list(doc)[:5])}" if isinstance(doc, dict) else json_kind(doc)
    raise MalformedRequest(f"expected a JSON object with {keys} ({expected}), got {got}")


def nested_rank(value: Any) -> int:
    """How deep a nested list goes along its first elements (cheap: no allocation)."""
    rank = 0
    while isinstance(value, list) and rank <= MAX_DEPTH:
        rank, value = rank + 1, value[0] if value else None
    return rank


def numeric_array(
    value: Any, field: str, expected: str, dtype: Any = np.float32, most: int | None = None
) -> np.ndarray:
    """A nested list of numbers as an array of ``dtype``; refuses strings, booleans, objects, ragged
    or deep lists, NaN/Infinity, and (before converting anything) more than ``most`` instances."""
    if most is not None and isinstance(value, list) and len(value) > most:
        raise InvalidInput(f'"{field}" holds {len(value)} items; at most {most} per request')
    if nested_rank(value) > MAX_DEPTH:
        raise InvalidInput(f'"{field}" must be {expected}; got a list nested more than {MAX_DEPTH} deep')
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, RecursionError):
        raise InvalidInput(f'"{field}" must be {expected}; got a ragged (or too deeply) nested list') from None
    integer = np.dtype(dtype).kind in "iu"
    if array.dtype.kind not in ("iu" if integer else "iuf") or array.size == 0:
        kind = "an empty list" if array.size == 0 else f"values of type {_kind_name(array)}"
        raise InvalidInput(f'"{field}" must be {expected}; got {kind}')
    try:
        with np.errstate(over="ignore", invalid="ignore"):  # 1e39 becomes inf in float32: refused below
            converted = array.astype(dtype, casting="unsafe" if not integer else "same_kind")
    except TypeError:
        raise InvalidInput(f'"{field}" must be {expected}; got values out of range') from None
    if integer and not np.array_equal(converted, array):
        raise InvalidInput(f'"{field}" must be {expected}; got integers out of range of {np.dtype(dtype)}')
    if not integer and not np.isfinite(converted).all():
        raise InvalidInput(f'"{field}" must be {expected}; got NaN or Infinity (or a number beyond {np.dtype(dtype)})')
    return converted


def _kind_name(array: np.ndarray) -> str:
    names = {"b": "boolean", "U": "string", "S": "bytes", "O": "object or mixed", "f": "float"}
    return names.get(array.dtype.kind, str(array.dtype))


def decode_image(
    value: Any, size: tuple[int, int] | None, max_pixels: int, mode: str = "L", formats: tuple = IMAGE_FORMATS
) -> np.ndarray:
    """Image bytes (one of ``formats``) as a uint8 array in ``mode`` (``L``: [H, W]; ``RGB``: [H, W, 3]),
    resized to ``size`` (width, height; None: as sent); larger than ``max_pixels`` is refused from
    the header, before any pixel is decoded; so are inputs whose decode would cost more than their pixel
    count (handlers/guards.py), and a decode past its time budget. Every image the handlers decode goes
    through here."""
    from PIL import Image  # Pillow is imported only by the image models that need it.

    if not isinstance(value, (bytes, bytearray)):
        raise UnsupportedMediaType("expected image bytes (image/png or image/jpeg)")
    try:
        check_image_structure(value)
        with decode_budget("the image"), Image.open(io.BytesIO(value), formats=formats) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise InvalidInput(f"image is {width}x{height} pixels; at most {max_pixels} pixels are accepted")
            pixels = image.convert(mode)
            if size is not None and pixels.size != size:
                pixels = pixels.resize(size, Image.Resampling.BOX)
            return np.asarray(pixels, dtype=np.uint8)
    except RequestError:
        raise
    except Image.DecompressionBombError:  # Pillow's own limit, checked as it reads the header
        raise InvalidInput(f"image is too large; at most {max_pixels} pixels are accepted") from None
    except Exception as err:  # noqa: BLE001 - a decoder fed client bytes may raise anything: the bytes are bad
        raise MalformedRequest(f"body is not a readable {' or '.join(formats)} image ({type(err).__name__})") from None


def parse_csv(value: Any, columns: tuple[str, ...], max_rows: int) -> np.ndarray:
    """CSV text with an optional header row naming ``columns``, as a float32 [rows, columns] array;
    more than ``max_rows`` data rows are refused before any is parsed."""
    if isinstance(value, (bytes, bytearray)):
        text = value.decode("utf-8", errors="replace")
    else:
        text = str(value).encode("utf-8", "replace").decode("utf-8")  # lone surrogates
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if lines and lines[0].replace(" ", "").lower() == ",".join(columns):
        lines = lines[1:]
    if len(lines) > max_rows:
        raise InvalidInput(f"CSV body has {len(lines)} data rows; at most {max_rows}")
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
            raise InvalidInput(f"CSV row {number} is not all numbers: {excerpt(line)}") from None
        if not np.isfinite(rows[-1]).all():
            raise InvalidInput(f"CSV row {number} holds NaN or Infinity; expected finite numbers: {excerpt(line)}")
    if not rows:
        raise MalformedRequest(f"CSV body has no data rows; expected a header {','.join(columns)} and rows")
    with np.errstate(over="ignore"):  # 1e39 becomes inf in float32: refused just below
        array = np.asarray(rows, dtype=np.float32)
    if not np.isfinite(array).all():
        raise InvalidInput("CSV holds a number beyond float32; expected finite numbers")
    return array
