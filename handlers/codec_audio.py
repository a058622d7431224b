"""The ``audio`` input codec: a WAV file → float32 [1, samples] mono in [-1, 1].

Spec: ``codec: {kind: audio, rate: 16000}`` on an input of shape ``[batch, samples]`` (float32);
the ``samples`` dimension's bounds limit the clip's length (refused before decoding when longer).
A file at another sample rate gets a 422 naming both rates (no resampling: it would change what the
model hears without saying so). Decoding: handlers/wav.py.
"""

from __future__ import annotations

import torch

from handlers.codec import InputCodec, Part, known
from handlers.errors import InvalidInput, RequestError
from handlers.wav import read_wav

MAX_SECONDS = 30  # the longest clip `make new-model SAMPLES=` allows unless a sample is longer
WAV_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave")


class AudioCodec(InputCodec):
    """WAV PCM 8/16/24/32-bit or IEEE float, any channels (mixed down to mono), at the declared rate."""

    kind = "audio"
    media_types = WAV_TYPES

    @classmethod
    def check(cls, options: dict, spec, model) -> dict:
        where = f"input {spec.name!r} codec audio"
        known(options, ("rate",), where)
        rate = options.get("rate")
        if not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0:
            raise ValueError(f"{where}: `rate` must be the model's sample rate in Hz (e.g. 16000); got {rate!r}")
        if len(spec.shape) != 2 or not spec.dtype.startswith("float"):
            raise ValueError(f"{where}: the input must be a float tensor [batch, samples]; it is {spec.describe()}")
        length = spec.shape[1]
        if isinstance(length, str) and spec.bounds(length)[1] is None:
            raise ValueError(f"{where}: bound the clip's length: `dims: {{{length}: {{max: <samples>}}}}`")
        return {"rate": rate}

    @classmethod
    def from_samples(cls, entry: dict, files: list) -> dict:
        """The input declared for these WAV clips (`make new-model SAMPLES=`): float32 ``[batch,
        samples]``, at most ``MAX_SECONDS`` (or the longest clip), at the clips' one sample rate."""
        clips = []
        for path in files:
            try:
                clips.append(read_wav(path.read_bytes()))
            except RequestError as err:
                raise ValueError(f"{path.name}: {err.message}") from None
        rates = sorted({c.rate for c in clips})
        if len(rates) != 1:
            raise ValueError(f"the clips have different sample rates {rates}: give one rate (resample them)")
        shape, dims = list(entry["shape"]), dict(entry.get("dims") or {})
        if len(shape) != 2:
            raise ValueError(f"the input's shape {shape} is not [batch, samples]")
        if not isinstance(shape[1], int):
            length = "samples" if shape[1] == "CHOOSE" else shape[1]
            dims[length] = {"min": 1, "max": max(MAX_SECONDS * rates[0], *(len(c.samples) for c in clips))}
            shape[1] = length
        return entry | {"dtype": "float32", "shape": shape, "dims": dims, "codec": {"kind": "audio", "rate": rates[0]}}

    @classmethod
    def spec_lines(cls, entry: dict) -> list[str]:
        """Top-level spec lines to add with it: the windows a clip is cut into, for the user to choose."""
        if isinstance(entry["shape"][1], int):
            return []  # clips of exactly that length, one model call each
        return [
            f"sequence: {{input: {entry['name']}, window: CHOOSE}}  # CHOOSE: samples per model call "
            "(e.g. 512; called in turn, reset per clip), or delete this line if the model takes a whole clip"
        ]

    def __init__(self, options: dict, spec, model):
        super().__init__(options, spec, model)
        self.rate = int(options["rate"])
        length = spec.shape[1]
        self.max_samples = length if isinstance(length, int) else spec.bounds(length)[1]
        self.dtype = getattr(torch, spec.dtype)

    def decode(self, data, media_type: str):
        clip = read_wav(data if isinstance(data, (bytes, bytearray)) else str(data).encode(), self.max_samples)
        if clip.rate != self.rate:
            raise InvalidInput(
                f"the WAV's sample rate is {clip.rate} Hz; this model takes {self.rate} Hz: resample the clip first"
            )
        samples = torch.from_numpy(clip.samples).to(self.dtype).unsqueeze(0)
        return Part((samples,), {"samples": len(clip.samples), "rate": clip.rate})

    def describe(self) -> str:
        most = f", at most {self.max_samples / self.rate:g} s" if self.max_samples else ""
        return f"a WAV file (audio/wav; PCM or float, {self.rate} Hz{most})"
