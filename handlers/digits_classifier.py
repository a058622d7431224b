"""Handler for the digits model: 8x8 grayscale digit images → top-k labels with probabilities."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from handlers.base import Decoded, ManifestHandler
from handlers.errors import InvalidInput, UnsupportedMediaType
from handlers.inputs import decode_image, json_field, numeric_array, parse_json


class DigitsClassifier(ManifestHandler):
    """Accepts PNG/JPEG bytes (body or form field) or JSON ``{"image": 8x8}`` / ``{"images": [...]}``.

    Pixels are 0..255, white ink on black as in scikit-learn's digits; larger images are
    resized to 8x8. Answers ``[{"label", "probability"}, ...]`` (top k, highest first).
    """

    v2_batch_key, v2_bytes_type = "images", "image/png"  # Open Inference Protocol input, see docs/SCALING.md

    size = (8, 8)
    image_types = ("image/png", "image/jpeg", "application/octet-stream")
    expected = "an 8x8 nested list of pixel values 0-255 (white ink on black)"

    def configure(self, manifest: dict, folder: Path, settings: dict | None = None) -> None:
        """Read the training normalization shipped beside the artifact, and k."""
        super().configure(manifest, folder, settings)
        norm = json.loads((Path(folder) / "normalization.json").read_text())
        self.scale, self.mean, self.std = float(norm["scale"]), float(norm["mean"]), float(norm["std"])
        self.topk = int((settings or {}).get("topk", 3))

    def preprocess(self, body: Any, content_type: str) -> Decoded:
        """Image bytes or JSON pixels → normalized float32 [n, 1, 8, 8]."""
        if content_type == "application/json":
            pixels, single = self._json_pixels(body)
        elif content_type in self.image_types or (not content_type and isinstance(body, (bytes, bytearray))):
            pixels, single = torch.from_numpy(decode_image(body, self.size).copy())[None].float(), True
        else:
            raise UnsupportedMediaType(
                f"content type {content_type!r} is not supported; send image/png, image/jpeg or "
                f'application/json {{"image": {self.expected}}}'
            )
        x = (pixels / self.scale - self.mean) / self.std
        return Decoded(x.unsqueeze(1).to(torch.float32), single)

    def _json_pixels(self, body: Any) -> tuple[torch.Tensor, bool]:
        name, value = json_field(parse_json(body), ("image", "images"), self.expected)
        single = name == "image"
        what = self.expected if single else f"a list of {self.expected}"
        pixels = torch.from_numpy(numeric_array(value, name, what))
        if single:
            pixels = pixels[None]
        if pixels.dim() != 3 or tuple(pixels.shape[1:]) != self.size:
            got = list(pixels.shape[1:] if single else pixels.shape)
            raise InvalidInput(f'"{name}" must be {what}; got shape {got}')
        if pixels.min() < 0 or pixels.max() > self.scale:
            raise InvalidInput(f'"{name}" pixel values must be within 0-255; got {pixels.min():g} to {pixels.max():g}')
        return pixels, single

    def postprocess(self, output: torch.Tensor) -> list:
        """Logits [n, 10] → per image the top k ``{"label", "probability"}``."""
        top = torch.softmax(output, dim=1).topk(min(self.topk, output.shape[1]), dim=1)
        return [
            [{"label": int(label), "probability": round(float(p), 6)} for p, label in zip(probs, labels, strict=True)]
            for probs, labels in zip(top.values, top.indices, strict=True)
        ]
