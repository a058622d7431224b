"""Handler for the sensor_anomaly model: windows of sensor readings → anomaly score and verdict."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from handlers.base import Decoded, ManifestHandler
from handlers.errors import InvalidInput, UnsupportedMediaType
from handlers.inputs import json_field, numeric_array, parse_csv, parse_json
from handlers.oip import V2Request


class SensorAnomalyDetector(ManifestHandler):
    """Accepts JSON ``{"window": [[v, t, c, p], ...]}`` / ``{"windows": [...]}`` or CSV text.

    Each row holds one time step of the four channels (vibration, temperature, current,
    pressure); the model returns the per-channel reconstruction error. Answers
    ``{"score", "threshold", "anomaly", "per_channel_error"}``. v2: an input ``window``, FP32
    ``[n, 64, 4]`` or BYTES ``[n]`` CSV texts; per_channel_error is FP32 ``[n, 4]`` in channel order.
    """

    v2_inputs = ("window",)
    fields = {"score": "FP32", "threshold": "FP32", "anomaly": "BOOL", "per_channel_error": "FP32"}

    csv_types = ("text/csv", "text/plain")

    def configure(self, manifest: dict, folder: Path, settings: dict | None = None) -> None:
        """Read the calibration (channels, threshold) shipped beside the artifact."""
        super().configure(manifest, folder, settings)
        calibration = json.loads((Path(folder) / "calibration.json").read_text())
        self.channels = tuple(calibration["channels"])
        self.threshold = float(calibration["threshold"])
        # Far beyond any real reading (the calibration's means are ~1-60), yet small enough that the
        # model's squared errors stay finite in float32: larger is refused, never scored as Infinity.
        self.max_abs = float((settings or {}).get("max_abs_reading", 1e6))
        self.steps = self.input_specs[0].bounds("time")[1] or calibration["window_length"]
        self.expected = f"a list of rows (time steps) of {len(self.channels)} numbers ({', '.join(self.channels)})"

    def decode(self, body: Any, content_type: str) -> Decoded:
        """JSON or CSV → raw float32 windows [n, time, channels] (the model normalizes)."""
        if content_type == "application/json":
            name, value = json_field(parse_json(body), ("window", "windows"), self.expected)
            single = name == "window"
            most = self.steps if single else self.max_instances()
            return self._windows(numeric_array(value, name, self.expected, most=most), single)
        if content_type in self.csv_types:
            return self._windows(parse_csv(body, self.channels, self.steps)[None], True)
        raise UnsupportedMediaType(
            f'send application/json {{"window": {self.expected}}} or text/csv with a header {",".join(self.channels)}'
        )

    def preprocess_v2(self, request: V2Request) -> Decoded:
        """Input ``window``: numbers [n, time, channels], or BYTES [n] CSV texts."""
        tensor = self.v2_input(request, "window")
        if tensor.datatype == "BYTES":
            return self.decode_elements(
                tensor, lambda e: self._windows(parse_csv(e, self.channels, self.steps)[None], True)
            )
        if tensor.datatype == "BOOL":
            raise InvalidInput(f"input 'window' must hold numbers: {self.expected}")
        return self._windows(tensor.data, False)

    def _windows(self, array: np.ndarray, single: bool) -> Decoded:
        with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: refused just below
            windows = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        windows = windows[None] if single and windows.dim() == 2 else windows
        if windows.dim() != 3 or windows.shape[2] != len(self.channels):
            got = list(windows.shape[1:] if single else windows.shape)
            raise InvalidInput(
                f"each window must be {self.expected}, i.e. {len(self.channels)} channels; got shape {got}"
            )
        if not bool(torch.isfinite(windows).all()) or bool((windows.abs() > self.max_abs).any()):
            raise InvalidInput(f"readings must be finite numbers within ±{self.max_abs:g}")
        return Decoded((windows,), single)

    def encode(self, outputs: tuple[torch.Tensor, ...], decoded: Decoded) -> list[dict]:
        """Per-channel errors [n, channels] → score (their mean), threshold and verdict per window."""
        (errors,) = outputs
        answers = []
        for row, score in zip(errors.tolist(), errors.mean(dim=1).tolist(), strict=True):
            answers.append(
                {
                    "score": round(score, 6),
                    "threshold": round(self.threshold, 6),
                    # Written so that a NaN score is an anomaly, never a healthy verdict.
                    "anomaly": not score <= self.threshold,
                    "per_channel_error": [round(e, 6) for e in row],  # v2: FP32 [n, channels]
                }
            )
        return answers

    def rest_item(self, fields: dict) -> dict:
        """REST names each channel's error: ``{"vibration": e, ...}`` (v2 keeps the list)."""
        return fields | {"per_channel_error": dict(zip(self.channels, fields["per_channel_error"], strict=True))}
