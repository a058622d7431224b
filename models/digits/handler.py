"""Handler for the digits model: 8x8 grayscale digit images → top-k labels with probabilities."""

from __future__ import annotations

import base64
import binascii
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from handlers.base import Decoded, ManifestHandler
from handlers.errors import InvalidInput, MalformedRequest, UnsupportedMediaType
from handlers.inputs import decode_image, json_field, numeric_array, parse_json
from handlers.oip import V2Request


class DigitsClassifier(ManifestHandler):
    """Accepts PNG/JPEG bytes (body or form field) or JSON ``{"image": 8x8}`` / ``{"images": [...]}``.

    Pixels are 0..255, white ink on black as in scikit-learn's digits; larger images are resized
    to 8x8. Answers ``[{"label", "probability"}, ...]`` (top k, highest first). v2: an input
    ``image``, FP32 ``[n, 8, 8]`` pixels or BYTES ``[n]`` PNG/JPEG files; outputs ``label``/``probability`` ``[n, k]``.
    """

    v2_inputs = ("image",)
    fields = {"label": "INT64", "probability": "FP32"}

    size = (8, 8)
    image_types = ("image/png", "image/jpeg", "application/octet-stream")
    expected = "an 8x8 nested list of pixel values 0-255 (white ink on black)"

    def configure(self, manifest: dict, folder: Path, settings: dict | None = None) -> None:
        """Read the training normalization shipped beside the artifact, k, and the image size cap."""
        super().configure(manifest, folder, settings)
        norm = json.loads((Path(folder) / "normalization.json").read_text())
        self.scale, self.mean, self.std = float(norm["scale"]), float(norm["mean"]), float(norm["std"])
        self.topk = int((settings or {}).get("topk", 3))
        # An 8x8 model: 512x512 is already a photo of a digit; decoding it costs ~1 ms (x 64 per request).
        self.max_pixels = int((settings or {}).get("max_pixels", 512 * 512))

    def decode(self, body: Any, content_type: str) -> Decoded:
        """Image bytes or JSON pixels → normalized float32 [n, 1, 8, 8]."""
        if content_type == "application/json":
            name, value = json_field(parse_json(body), ("image", "images"), self.expected)
            return self._pixels(value, name, single=name == "image")
        if content_type in self.image_types or (not content_type and isinstance(body, (bytes, bytearray))):
            return self._image(body)
        raise UnsupportedMediaType(f'send image/png, image/jpeg or application/json {{"image": {self.expected}}}')

    def preprocess_v2(self, request: V2Request) -> Decoded:
        """Input ``image``: FP32/INT pixels [n, 8, 8], or BYTES [n] image files (base64 in JSON)."""
        tensor = self.v2_input(request, "image")
        if tensor.datatype == "BYTES":
            return self.decode_elements(tensor, lambda e: self._image(_image_bytes(e)))
        if tensor.datatype == "BOOL":
            raise InvalidInput("input 'image' must hold numbers (FP32 pixels) or BYTES (image files)")
        return self._pixels(tensor.data, "image", single=False)

    def _image(self, body: Any) -> Decoded:
        pixels = torch.from_numpy(decode_image(body, self.size, self.max_pixels).copy())[None].float()
        return self._normalized(pixels, True)

    def _pixels(self, value: Any, name: str, single: bool) -> Decoded:
        what = self.expected if single else f"a list of {self.expected}"
        most = None if single else self.max_instances()
        array = value if isinstance(value, np.ndarray) else numeric_array(value, name, what, most=most)
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: refused just below
            array = np.ascontiguousarray(array, dtype=np.float32)
        if not np.isfinite(array).all():
            raise InvalidInput(f'"{name}" must be {what}; got NaN or Infinity')
        pixels = torch.from_numpy(array)
        pixels = pixels[None] if single else pixels
        if pixels.dim() != 3 or tuple(pixels.shape[1:]) != self.size:
            got = list(pixels.shape[1:] if single else pixels.shape)
            raise InvalidInput(f'"{name}" must be {what}; got shape {got}')
        if pixels.min() < 0 or pixels.max() > self.scale:
            raise InvalidInput(f'"{name}" pixel values must be within 0-255; got {pixels.min():g} to {pixels.max():g}')
        return self._normalized(pixels, single)

    def _normalized(self, pixels: torch.Tensor, single: bool) -> Decoded:
        x = (pixels / self.scale - self.mean) / self.std
        return Decoded((x.unsqueeze(1).to(torch.float32),), single)

    def encode(self, outputs: tuple[torch.Tensor, ...], decoded: Decoded) -> list[dict]:
        """Logits [n, 10] → per image the top k: ``label`` [k], ``probability`` [k]."""
        (logits,) = outputs
        top = torch.softmax(logits, dim=1).topk(min(self.topk, logits.shape[1]), dim=1)
        return [
            {"label": labels, "probability": [round(p, 6) for p in probs]}
            for probs, labels in zip(top.values.tolist(), top.indices.tolist(), strict=True)
        ]

    def rest_item(self, fields: dict) -> list[dict]:
        """REST: the top k as records ``[{"label", "probability"}, ...]``, highest first."""
        return [{"label": k, "probability": p} for k, p in zip(fields["label"], fields["probability"], strict=True)]


def _image_bytes(element: Any) -> bytes:
    """A v2 BYTES element as image bytes: raw (binary extension) or base64 (JSON)."""
    if isinstance(element, bytes):
        return element
    try:
        return base64.b64decode(element, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedRequest("BYTES image elements in JSON must be base64") from None
