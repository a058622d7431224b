"""The WAV reader, the window loop and segment extraction, against references written here: WAV
files built byte by byte with struct, windows sliced by hand, segments listed by hand."""

from __future__ import annotations

import struct
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from handlers.errors import InvalidInput, MalformedRequest, RequestError
from handlers.schema import InputSpec
from handlers.sequence import Segment, Sequence, segments
from handlers.wav import read_wav


def riff(chunks: list[tuple[bytes, bytes]], declared: int | None = None) -> bytes:
    body = b"WAVE" + b"".join(
        cid + struct.pack("<I", len(data)) + data + b"\0" * (len(data) & 1) for cid, data in chunks
    )
    return b"RIFF" + struct.pack("<I", declared if declared is not None else len(body)) + body


def fmt_chunk(code: int, channels: int, rate: int, bits: int, align: int | None = None, extensible: int = 0) -> bytes:
    align = channels * bits // 8 if align is None else align
    head = struct.pack("<HHIIHH", 0xFFFE if extensible else code, channels, rate, rate * align, align, bits)
    if extensible:  # cbSize, valid bits, channel mask, sub-format GUID (its first two bytes: the code)
        head += (
            struct.pack("<HHI", 22, bits, 0)
            + struct.pack("<H", code)
            + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        )
    return head


def wav(frames: np.ndarray, raw: bytes, bits: int, code: int = 1, rate: int = 16000, extensible: int = 0) -> bytes:
    channels = 1 if frames.ndim == 1 else frames.shape[1]
    return riff([(b"fmt ", fmt_chunk(code, channels, rate, bits, extensible=extensible)), (b"data", raw)])


RNG = np.random.default_rng(3)


def test_pcm16_mono_samples_exact():
    ints = RNG.integers(-32768, 32768, 1000).astype("<i2")
    clip = read_wav(wav(ints, ints.tobytes(), 16))
    assert clip.rate == 16000 and clip.channels == 1 and clip.samples.dtype == np.float32
    assert np.array_equal(clip.samples, np.array([i / 32768 for i in ints.tolist()], np.float32))


def test_pcm8_unsigned():
    raw = bytes([0, 128, 255, 64])
    clip = read_wav(wav(np.zeros(4), raw, 8))
    assert clip.samples.tolist() == [-1.0, 0.0, 127 / 128, -0.5]


def test_pcm24_sign_extended():
    values = [-(1 << 23), -1, 0, 1, (1 << 23) - 1, 1234567]
    raw = b"".join(v.to_bytes(3, "little", signed=True) for v in values)
    clip = read_wav(wav(np.zeros(6), raw, 24))
    assert np.array_equal(clip.samples, np.array([v / (1 << 23) for v in values], np.float32))


def test_pcm32_and_extensible():
    ints = np.array([-(2**31), -5, 0, 7, 2**31 - 1], "<i4")
    want = np.array([v / 2**31 for v in ints.tolist()], np.float32)
    assert np.array_equal(read_wav(wav(ints, ints.tobytes(), 32)).samples, want)
    assert np.array_equal(read_wav(wav(ints, ints.tobytes(), 32, extensible=1)).samples, want)


def test_float32_stereo_mixdown_and_clip():
    frames = np.array([[0.5, -0.25], [1.0, 1.0], [2.0, 2.0], [-0.1, 0.3]], "<f4")
    clip = read_wav(wav(frames, frames.tobytes(), 32, code=3, rate=8000))
    assert clip.channels == 2 and clip.rate == 8000
    assert np.allclose(clip.samples, [0.125, 1.0, 1.0, 0.1], atol=1e-7)  # 2.0 clipped to full scale


def test_skips_other_chunks_and_pad_byte():
    ints = np.arange(-3, 4, dtype="<i2")
    body = riff(
        [(b"LIST", b"abc"), (b"fmt ", fmt_chunk(1, 1, 16000, 16)), (b"junk", b"x" * 5), (b"data", ints.tobytes())]
    )
    assert np.array_equal(read_wav(body).samples, ints.astype(np.float32) / 32768)


HOSTILE = {
    "not riff": (b"OggS" + b"\0" * 40, MalformedRequest),
    "empty riff": (b"RIFF\0\0\0\0WAVE", MalformedRequest),
    "huge data size": (
        riff([(b"fmt ", fmt_chunk(1, 1, 16000, 16))]) + b"data" + struct.pack("<I", 0xFFFFFFF0) + b"\0" * 8,
        MalformedRequest,
    ),
    "huge fmt size": (b"RIFF\0\0\0\0WAVEfmt " + struct.pack("<I", 1 << 31) + b"\0" * 16, MalformedRequest),
    "no channels": (riff([(b"fmt ", fmt_chunk(1, 0, 16000, 16, align=2)), (b"data", b"\0" * 8)]), MalformedRequest),
    "odd block align": (
        riff([(b"fmt ", fmt_chunk(1, 2, 16000, 16, align=3)), (b"data", b"\0" * 12)]),
        MalformedRequest,
    ),
    "rate zero": (riff([(b"fmt ", fmt_chunk(1, 1, 0, 16)), (b"data", b"\0" * 8)]), MalformedRequest),
    "12-bit": (riff([(b"fmt ", fmt_chunk(1, 1, 16000, 12, align=2)), (b"data", b"\0" * 8)]), InvalidInput),
    "mu-law": (riff([(b"fmt ", fmt_chunk(7, 1, 16000, 8)), (b"data", b"\0" * 8)]), InvalidInput),
    "no fmt": (riff([(b"data", b"\0" * 8)]), MalformedRequest),
    "no data": (riff([(b"fmt ", fmt_chunk(1, 1, 16000, 16))]), MalformedRequest),
    "short fmt": (riff([(b"fmt ", b"\1\0\1\0"), (b"data", b"\0" * 8)]), MalformedRequest),
    "no samples": (riff([(b"fmt ", fmt_chunk(1, 1, 16000, 16)), (b"data", b"\0")]), InvalidInput),
    "nan float": (
        riff([(b"fmt ", fmt_chunk(3, 1, 16000, 32)), (b"data", np.array([np.nan], "<f4").tobytes())]),
        InvalidInput,
    ),
    "truncated header": (riff([(b"fmt ", fmt_chunk(1, 1, 16000, 16))])[:30], MalformedRequest),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_wavs_are_request_errors(name):
    body, error = HOSTILE[name]
    with pytest.raises(error) as caught:
        read_wav(body)
    assert isinstance(caught.value, RequestError) and caught.value.status < 500


def test_too_long_is_refused_before_decoding():
    ints = np.zeros(1001, "<i2")
    with pytest.raises(InvalidInput, match="at most 1000 samples"):
        read_wav(wav(ints, ints.tobytes(), 16), max_frames=1000)


class Running(torch.nn.Module):
    """A running sum: state kept between calls, cleared by reset_state."""

    def __init__(self):
        super().__init__()
        self.state = torch.zeros(1)

    def reset_state(self):
        self.state = torch.zeros(1)

    def forward(self, x):
        self.state = self.state + x.sum(dim=1, keepdim=True)
        return torch.sigmoid(self.state[:, 0] * 0.01)


def loop_reference(x: torch.Tensor, window: int) -> torch.Tensor:
    """The model called on hand-sliced windows (the last zero-filled), scores stacked per window."""
    model = Running()
    padded = torch.zeros(x.shape[0], -(-x.shape[1] // window) * window)
    padded[:, : x.shape[1]] = x
    return torch.stack([model(padded[:, k : k + window]) for k in range(0, padded.shape[1], window)], dim=1)


def windowed(model, window: int, combine: str = "concat", reset: str | None = None):
    """The sequence runner as the handler uses it: reset once, then one call per window."""
    context = SimpleNamespace(inputs=[InputSpec("x", "float32", ("batch", "samples"), {})])
    runner = Sequence(Sequence.check({"input": "x", "window": window, "combine": combine}, context), context)

    def call(x):
        if reset:
            getattr(model, reset)()
        return runner((x,), lambda args: model(*args))[0]

    return call


@pytest.mark.parametrize("length", [1, 512, 1300])
def test_windowed_equals_a_loop_and_resets(length):
    x = torch.randn(2, length)
    wrapped = windowed(Running(), 512, reset="reset_state")
    first, again = wrapped(x), wrapped(x)  # the reset at each call: the same answer twice
    want = loop_reference(x, 512)
    assert first.shape == (2, -(-length // 512))
    assert torch.equal(first, want) and torch.equal(again, want)


def test_windowed_aggregates():
    x = torch.arange(8.0).reshape(1, 8)
    model = lambda w: w.sum(dim=1, keepdim=True)  # noqa: E731 - a stateless per-window sum
    sums = torch.tensor([[1.0, 5.0, 9.0, 13.0]])
    assert torch.equal(windowed(model, 2)(x), sums)
    assert torch.equal(windowed(model, 2, "mean")(x), sums.mean(dim=1, keepdim=True).reshape(1, 1))
    assert torch.equal(windowed(model, 2, "max")(x), torch.tensor([[13.0]]))
    assert torch.equal(windowed(model, 2, "last")(x), torch.tensor([[13.0]]))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"input": "y", "window": 4}, "must name one of"),
        ({"input": "x", "window": 0}, "positive"),
        ({"input": "x", "window": 4, "combine": "sum"}, "combine"),
        ({"input": "x", "window": 4, "hop": 2}, "unknown"),
    ],
)
def test_sequence_options_checked(options, message):
    context = SimpleNamespace(inputs=[InputSpec("x", "float32", ("batch", "samples"), {})])
    with pytest.raises(ValueError, match=message):
        Sequence.check(options, context)


def test_segments_by_hand():
    scores = [0.1, 0.9, 0.8, 0.2, 0.6, 0.1, 0.7, 0.7, 0.9]
    assert segments(scores, 0.5, 0.5) == [Segment(0.5, 1.5), Segment(2.0, 2.5), Segment(3.0, 4.5)]
    assert segments(scores, 0.5, 0.5, min_duration=1.0) == [Segment(0.5, 1.5), Segment(3.0, 4.5)]
    assert segments(scores, 0.5, 0.5, duration=4.2)[-1] == Segment(3.0, 4.2)
    assert segments([0.1, 0.2], 0.032, 0.5) == []


def test_text_encoder_matches_the_tokenizers_own_padding():
    from tokenizers import Tokenizer

    from export.paths import MODELS
    from handlers.text_codec import TextEncoder

    path = MODELS / "text_embedder" / "tokenizer.json"
    texts = ["A man is playing a guitar.", "Hi", "word " * 400]
    reference = Tokenizer.from_file(str(path))
    reference.enable_truncation(64)
    reference.enable_padding(pad_id=reference.token_to_id("[PAD]"), pad_token="[PAD]")  # to the longest
    want = reference.encode_batch(texts)
    got = TextEncoder(path, max_tokens=64).encode(texts)
    assert got.tensors["ids"].tolist() == [e.ids for e in want]
    assert got.tensors["mask"].tolist() == [e.attention_mask for e in want]
    assert got.tensors["type_ids"].tolist() == [e.type_ids for e in want]
    assert got.tokens == [sum(e.attention_mask) for e in want] and got.truncated == [False, False, True]
    with pytest.raises(InvalidInput):
        TextEncoder(path, max_tokens=64).encode(["  "])
