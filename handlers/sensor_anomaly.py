"""Handler for the sensor_anomaly model: windows of sensor readings → anomaly score and verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from handlers.base import Decoded, ManifestHandler
from handlers.errors import InvalidInput, UnsupportedMediaType
from handlers.inputs import json_field, numeric_array, parse_csv, parse_json


class SensorAnomalyDetector(ManifestHandler):
    """Accepts JSON ``{"window": [[v, t, c, p], ...]}`` / ``{"windows": [...]}`` or CSV text.

    Each row holds one time step of the four channels (vibration, temperature, current,
    pressure); the model returns the per-channel reconstruction error. Answers
    ``{"score", "threshold", "anomaly", "per_channel_error"}``.
    """

    v2_batch_key, v2_bytes_type = "windows", "text/csv"  # Open Inference Protocol input, see docs/SCALING.md

    csv_types = ("text/csv", "text/plain")

    def configure(self, manifest: dict, folder: Path, settings: dict | None = None) -> None:
        """Read the calibration (channels, threshold) shipped beside the artifact."""
        super().configure(manifest, folder, settings)
        calibration = json.loads((Path(folder) / "calibration.json").read_text())
        self.channels = tuple(calibration["channels"])
        self.threshold = float(calibration["threshold"])
        self.expected = f"a list of rows (time steps) of {len(self.channels)} numbers ({', '.join(self.channels)})"

    def preprocess(self, body: Any, content_type: str) -> Decoded:
        """JSON or CSV → raw float32 windows [n, time, channels] (the model normalizes)."""
        if content_type == "application/json":
            name, value = json_field(parse_json(body), ("window", "windows"), self.expected)
            windows, single = torch.from_numpy(numeric_array(value, name, self.expected)), name == "window"
            if single:
                windows = windows[None]
        elif content_type in self.csv_types:
            windows, single = torch.from_numpy(parse_csv(body, self.channels))[None], True
        else:
            raise UnsupportedMediaType(
                f"content type {content_type!r} is not supported; send application/json "
                f'{{"window": {self.expected}}} or text/csv with a header {",".join(self.channels)}'
            )
        if windows.dim() != 3 or windows.shape[2] != len(self.channels):
            raise InvalidInput(
                f"each window must be {self.expected}, i.e. {len(self.channels)} channels; "
                f"got shape {list(windows.shape[1:] if single else windows.shape)}"
            )
        return Decoded(windows, single)

    def postprocess(self, output: torch.Tensor) -> list:
        """Per-channel errors [n, channels] → score (their mean), threshold and verdict per window."""
        return [
            {
                "score": round(float(errors.mean()), 6),
                "threshold": round(self.threshold, 6),
                "anomaly": bool(errors.mean() > self.threshold),
                "per_channel_error": {c: round(float(e), 6) for c, e in zip(self.channels, errors, strict=True)},
            }
            for errors in output
        ]
