"""Handler for the digits model: the declared image and classes codecs (spec.yaml), plus one form no
codec has: pixels as JSON numbers (the scikit-learn digits' own 8x8 arrays, 0-255)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from handlers.base import Decoded
from handlers.errors import InvalidInput
from handlers.inputs import json_field, numeric_array, parse_json
from handlers.oip import V2Request
from handlers.tensor import TensorHandler, is_files


class DigitsClassifier(TensorHandler):
    """PNG/JPEG bytes (body, form field, base64 in JSON) through the image codec, or JSON pixels
    ``{"image": 8x8}`` / ``{"images": [...]}``. Answers the top 3 ``[{"label", "probability"}]``
    (the classes codec). v2: input ``image``, FP32 ``[n, 8, 8]`` pixels or BYTES ``[n]`` image files;
    outputs ``label`` (INT64) and ``probability`` (FP32), ``[n, 3]``."""

    v2_inputs = ("image",)
    expected = "an 8x8 nested list of pixel values 0-255 (white ink on black)"

    def decode(self, body: Any, content_type: str) -> Decoded:
        """JSON pixels here; everything else (files, base64) as the codecs declare."""
        if content_type != "application/json":
            return super().decode(body, content_type)
        doc = parse_json(body)
        name, value = json_field(doc, ("image", "images"), self.expected)
        if is_files(value):
            return super().decode(doc, content_type)
        return self.pixels(value, name, single=name == "image")

    def preprocess_v2(self, request: V2Request) -> Decoded:
        """Input ``image``: BYTES files (the codec), or FP32/INT pixels [n, 8, 8]."""
        tensor = self.v2_input(request, "image")
        if tensor.datatype == "BYTES":
            return super().preprocess_v2(request)
        if tensor.datatype == "BOOL":
            raise InvalidInput("input 'image' must hold numbers (FP32 pixels) or BYTES (image files)")
        return self.pixels(tensor.data, "image", single=False)

    def pixels(self, value: Any, name: str, single: bool) -> Decoded:
        """Pixel arrays, checked, normalised by the image codec's declared scale, mean and std."""
        what = self.expected if single else f"a list of {self.expected}"
        most = None if single else self.max_instances()
        array = value if isinstance(value, np.ndarray) else numeric_array(value, name, what, most=most)
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: refused just below
            array = np.ascontiguousarray(array, dtype=np.float32)
        if not np.isfinite(array).all():
            raise InvalidInput(f'"{name}" must be {what}; got NaN or Infinity')
        array = array[None] if single else array
        size = tuple(self.codecs["image"].options["size"])
        if array.ndim != 3 or array.shape[1:] != size:
            raise InvalidInput(f'"{name}" must be {what}; got shape {list(array.shape[1:] if single else array.shape)}')
        if array.min() < 0 or array.max() > 255:
            raise InvalidInput(f'"{name}" pixel values must be within 0-255; got {array.min():g} to {array.max():g}')
        return Decoded((torch.cat([self.codecs["image"].tensor(image) for image in array]),), single)
