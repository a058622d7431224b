"""WAV (RIFF/WAVE) bodies as float32 mono samples, read with nothing but numpy.

Python's ``wave`` module reads PCM only; this parser also reads IEEE float and WAVE_FORMAT_EXTENSIBLE.
Every size the file declares is checked against the bytes actually sent before anything is sliced
or allocated: a hostile header (a chunk claiming 4 GB, no channels, a block align that disagrees
with the sample width) is a 4xx RequestError, never a 500 or an allocation larger than the body.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

from handlers.errors import InvalidInput, MalformedRequest

PCM, FLOAT, EXTENSIBLE = 0x0001, 0x0003, 0xFFFE
PCM_BITS = (8, 16, 24, 32)
FLOAT_BITS = (32, 64)
MAX_CHANNELS = 64
STREAMING = 0xFFFFFFFF  # a data size written by streaming encoders that did not know the length
EXPECTED = "a RIFF/WAVE file, PCM 8/16/24/32-bit or IEEE float 32/64-bit"


@dataclass(frozen=True)
class WavFormat:
    """What the ``fmt`` chunk says."""

    code: int  # PCM or FLOAT (EXTENSIBLE resolved to its sub-format)
    channels: int
    rate: int
    bits: int


@dataclass(frozen=True)
class Wav:
    """A decoded clip: ``samples`` float32 [frames], mono, in [-1, 1]."""

    samples: np.ndarray
    rate: int
    channels: int  # of the file, before the mix-down

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.rate


def read_wav(body: bytes, max_frames: int | None = None) -> Wav:
    """The clip in ``body``; raises MalformedRequest (400) for a file that is not a readable WAV,
    InvalidInput (422) for an unsupported encoding or more than ``max_frames`` frames."""
    data = memoryview(bytes(body) if not isinstance(body, (bytes, bytearray)) else body)
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise MalformedRequest(f"body is not a WAV file; expected {EXPECTED}")
    fmt, payload = None, None
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = bytes(data[pos : pos + 4]), struct.unpack_from("<I", data, pos + 4)[0]
        start = pos + 8
        if chunk == b"data":
            if fmt is None:
                raise MalformedRequest("WAV data chunk comes before its fmt chunk")
            if size == STREAMING:  # length unknown when written: the rest of the body
                size = len(data) - start
            if size > len(data) - start:
                raise MalformedRequest(
                    f"WAV is truncated: its data chunk declares {size} bytes, {len(data) - start} sent"
                )
            payload = data[start : start + size]
            break
        if size > len(data) - start:
            raise MalformedRequest(f"WAV is truncated: chunk {chunk!r} declares {size} bytes, {len(data) - start} sent")
        if chunk == b"fmt ":
            fmt = _format(data[start : start + size])
        pos = start + size + (size & 1)  # chunks are padded to an even length
    if fmt is None or payload is None:
        raise MalformedRequest(f"WAV has no {'fmt' if fmt is None else 'data'} chunk; expected {EXPECTED}")
    width = fmt.bits // 8
    frames = len(payload) // (width * fmt.channels)
    if frames == 0:
        raise InvalidInput("WAV holds no samples")
    if max_frames is not None and frames > max_frames:
        raise InvalidInput(
            f"WAV is {frames / fmt.rate:.2f} s ({frames} samples at {fmt.rate} Hz); at most {max_frames} samples"
        )
    raw = payload[: frames * width * fmt.channels]  # a partial last frame is dropped
    samples = _to_float(raw, fmt).reshape(frames, fmt.channels)
    mono = samples[:, 0] if fmt.channels == 1 else samples.mean(axis=1, dtype=np.float32)
    if fmt.code == FLOAT:
        if not np.isfinite(mono).all():
            raise InvalidInput("WAV holds NaN or Infinity samples; expected finite samples in [-1, 1]")
        mono = np.clip(mono, -1.0, 1.0)  # float WAVs may overshoot full scale; integer ones cannot
    return Wav(np.ascontiguousarray(mono, dtype=np.float32), fmt.rate, fmt.channels)


def _format(chunk: memoryview) -> WavFormat:
    """The fmt chunk, every field checked."""
    if len(chunk) < 16:
        raise MalformedRequest(f"WAV fmt chunk is {len(chunk)} bytes; at least 16 expected")
    code, channels, rate, _, align, bits = struct.unpack_from("<HHIIHH", chunk, 0)
    if code == EXTENSIBLE:
        if len(chunk) < 26:
            raise MalformedRequest("WAV fmt chunk is WAVE_FORMAT_EXTENSIBLE but too short for its sub-format")
        code = struct.unpack_from("<H", chunk, 24)[0]  # the first two bytes of the sub-format GUID
    if channels == 0 or channels > MAX_CHANNELS:
        raise MalformedRequest(f"WAV declares {channels} channels; expected 1 to {MAX_CHANNELS}")
    if rate == 0:
        raise MalformedRequest("WAV declares a sample rate of 0 Hz")
    allowed = {PCM: PCM_BITS, FLOAT: FLOAT_BITS}.get(code)
    if allowed is None or bits not in allowed:
        kind = {PCM: "PCM", FLOAT: "IEEE float"}.get(code, f"format code {code:#06x}")
        raise InvalidInput(f"WAV is {kind} with {bits}-bit samples; expected {EXPECTED}")
    if align != channels * bits // 8:
        raise MalformedRequest(
            f"WAV block align is {align}; {channels} channel(s) of {bits}-bit samples need {channels * bits // 8}"
        )
    return WavFormat(code, channels, rate, bits)


def _to_float(raw: memoryview, fmt: WavFormat) -> np.ndarray:
    """Interleaved samples as float32, integers scaled to [-1, 1) by their full scale."""
    if fmt.code == FLOAT:
        return np.frombuffer(raw, "<f4" if fmt.bits == 32 else "<f8").astype(np.float32)
    if fmt.bits == 8:  # unsigned, centred on 128
        return (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    if fmt.bits == 24:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        ints = (
            b[:, 0].astype(np.int32)
            | (b[:, 1].astype(np.int32) << 8)
            | (b[:, 2].astype(np.int8).astype(np.int32) << 16)
        )
        return ints.astype(np.float32) / float(1 << 23)
    ints = np.frombuffer(raw, "<i2" if fmt.bits == 16 else "<i4")
    # float64 for 32-bit: float32 cannot hold every int32, and the scale must be exact before rounding.
    return (ints.astype(np.float64) / float(1 << (fmt.bits - 1))).astype(np.float32)
