"""The ``segments`` output codec: per-window scores → the times where the score stays above a threshold.

Spec: ``codec: {kind: segments, threshold: 0.5, min_duration: 0.0, frame: <seconds>}`` on an output
holding one score per window (``[batch, windows]`` or ``[batch, windows, 1]``). ``frame`` (seconds
per score) defaults to the ``sequence`` window over the audio input's sample rate. Answer fields:
``segments`` (a list of ``{"start", "end"}`` in seconds; a v2 BYTES element holding that JSON) and
``scores`` (the per-window scores; dropped with ``scores: false``). A segment never ends past the
clip's true length (the last window is padded).
"""

from __future__ import annotations

import torch

from handlers.codec import OutputCodec, known
from handlers.sequence import segments


class SegmentsCodec(OutputCodec):
    """Per-window scores to ``[{"start", "end"}]`` seconds, plus the scores themselves."""

    kind = "segments"

    @classmethod
    def check(cls, options: dict, output: dict, model) -> dict:
        where = f"output {output['name']!r} codec segments"
        known(options, ("threshold", "min_duration", "frame", "scores"), where)
        checked = {"threshold": options.get("threshold", 0.5), "min_duration": options.get("min_duration", 0.0)}
        for key, value in checked.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value != value:
                raise ValueError(f"{where}: `{key}` must be a number; got {value!r}")
        if checked["min_duration"] < 0:
            raise ValueError(f"{where}: `min_duration` must be 0 or more seconds; got {checked['min_duration']!r}")
        frame = options.get("frame")
        if frame is not None and (not isinstance(frame, (int, float)) or isinstance(frame, bool) or frame <= 0):
            raise ValueError(f"{where}: `frame` must be the seconds one score covers; got {frame!r}")
        if frame is None and not (model.sequence and model.sequence.get("window")):
            raise ValueError(f"{where}: set `frame` (seconds per score), or declare `sequence: {{input, window}}`")
        shape = output.get("shape") or []
        if shape and not (len(shape) == 2 or (len(shape) == 3 and shape[2] == 1)):
            raise ValueError(f"{where}: the output must hold one score per window, [batch, windows]; it is {shape}")
        scores = options.get("scores", True)
        if not isinstance(scores, bool):
            raise ValueError(f"{where}: `scores` must be true or false; got {scores!r}")
        return checked | {"frame": frame, "scores": scores}

    def fields(self) -> dict[str, str]:
        return {"segments": "BYTES", **({"scores": "FP32"} if self.options.get("scores", True) else {})}

    def encode(self, row: torch.Tensor, info: dict) -> dict:
        scores = row.reshape(-1).float()
        clip = self._clip(info)
        frame = self.options.get("frame")
        if frame is None:  # one score per sequence window of the clip's samples
            frame = self.model.sequence["window"] / clip["rate"] if clip else None
        if frame is None:
            raise ValueError("segments: no `frame` and no audio input to take the sample rate from")
        duration = clip["samples"] / clip["rate"] if clip else None
        found = segments(
            scores.tolist(), float(frame), float(self.options["threshold"]), self.options["min_duration"], duration
        )
        fields = {"segments": [{"start": s.start, "end": s.end} for s in found]}
        if self.options.get("scores", True):
            fields["scores"] = scores.tolist()
        return fields

    def _clip(self, info: dict) -> dict | None:
        """The audio input's per-instance info (samples, rate): the sequence input's, else any."""
        name = (self.model.sequence or {}).get("input")
        found = info.get(name) if name else None
        if isinstance(found, dict) and "rate" in found:
            return found
        return next((v for v in info.values() if isinstance(v, dict) and "rate" in v), None)
