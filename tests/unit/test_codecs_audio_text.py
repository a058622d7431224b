"""The audio, text and segments codecs through the codec interface (handlers/codec.py): options
checked at spec load with a sentence naming the option, a WAV decoded to one instance, per-window
scores to segments, a text to the inputs it feeds. References are written here."""

from __future__ import annotations

import dataclasses
import json
import shutil
import struct

import numpy as np
import pytest
import torch

from export.paths import MODELS
from handlers.codec import CodecContext
from handlers.codec_audio import AudioCodec
from handlers.codec_segments import SegmentsCodec
from handlers.codec_text import TextCodec
from handlers.errors import InvalidInput
from handlers.schema import InputSpec

AUDIO = InputSpec("x", "float32", ("batch", "samples"), {"samples": {"min": 1, "max": 1000}})


def pcm16(ints: np.ndarray, rate: int) -> bytes:
    raw = ints.astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    body = b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(raw)) + raw
    return b"RIFF" + struct.pack("<I", len(body)) + body


def audio(options=None, spec=AUDIO) -> AudioCodec:
    context = CodecContext(MODELS, [spec], [])
    return AudioCodec(AudioCodec.check(options or {"rate": 100}, spec, context), spec, context)


def test_audio_decodes_one_instance_at_the_declared_rate():
    ints = np.array([0, 16384, -32768, 100], np.int16)
    part = audio().decode(pcm16(ints, 100), "audio/wav")
    (x,) = part.tensors
    assert x.dtype == torch.float32 and x.shape == (1, 4)
    assert x[0].tolist() == [0.0, 0.5, -1.0, 100 / 32768]
    assert part.info == {"samples": 4, "rate": 100}


def test_audio_refuses_another_rate_and_too_long_clips():
    with pytest.raises(InvalidInput, match="8000 Hz.*100 Hz"):
        audio().decode(pcm16(np.zeros(4, np.int16), 8000), "audio/wav")
    with pytest.raises(InvalidInput, match="at most 1000 samples"):
        audio().decode(pcm16(np.zeros(1001, np.int16), 100), "audio/wav")


@pytest.mark.parametrize(
    ("options", "spec", "message"),
    [
        ({}, AUDIO, "`rate`"),
        ({"rate": 16000, "channels": 2}, AUDIO, "unknown option"),
        ({"rate": 16000}, InputSpec("x", "float32", ("batch", "samples"), {}), "bound the clip"),
        ({"rate": 16000}, InputSpec("x", "int64", ("batch", "samples"), {"samples": {"max": 9}}), "float tensor"),
    ],
)
def test_audio_options_checked(options, spec, message):
    with pytest.raises(ValueError, match=message):
        AudioCodec.check(options, spec, CodecContext(MODELS, [spec], []))


def segments_codec(options: dict, sequence: dict | None = None) -> SegmentsCodec:
    output = {"name": "speech", "dtype": "float32", "shape": ["batch", "windows"]}
    context = CodecContext(MODELS, [AUDIO], [output], sequence)
    return SegmentsCodec(SegmentsCodec.check(options, output, context), output, context)


def test_segments_from_sequence_windows_and_the_clip_length():
    codec = segments_codec({"threshold": 0.5}, {"input": "x", "window": 10})
    row = torch.tensor([0.9, 0.1, 0.6, 0.7])  # windows of 10 samples at 100 Hz: 0.1 s each
    fields = codec.encode(row, {"x": {"samples": 35, "rate": 100}})
    assert fields == {"segments": [{"start": 0.0, "end": 0.1}, {"start": 0.2, "end": 0.35}], "scores": row.tolist()}
    assert list(codec.fields()) == ["segments", "scores"]
    assert json.dumps(fields)  # JSON-able as it is


def test_segments_with_an_explicit_frame_and_no_scores():
    codec = segments_codec({"frame": 0.02, "threshold": 0.2, "min_duration": 0.03, "scores": False})
    fields = codec.encode(torch.tensor([[0.3], [0.1], [0.5], [0.5]]), {})
    assert fields == {"segments": [{"start": 0.04, "end": 0.08}]} and list(codec.fields()) == ["segments"]


def test_segments_options_checked():
    with pytest.raises(ValueError, match="`frame`"):
        segments_codec({})  # neither frame nor sequence
    with pytest.raises(ValueError, match="`threshold`"):
        segments_codec({"threshold": "high", "frame": 0.1})


TEXT_INPUTS = [
    InputSpec("input_ids", "int64", ("batch", "seq"), {"seq": {"min": 2, "max": 16}}),
    InputSpec("attention_mask", "int64", ("batch", "seq"), {"seq": {"min": 2, "max": 16}}),
]


def test_text_feeds_ids_and_mask_from_the_tokenizer(tmp_path):
    from tokenizers import Tokenizer

    shutil.copy(MODELS / "text_embedder" / "tokenizer.json", tmp_path / "tokenizer.json")
    context = CodecContext(tmp_path, TEXT_INPUTS, [])
    options = TextCodec.check({"mask": "attention_mask"}, TEXT_INPUTS[0], context)
    codec = TextCodec(options, TEXT_INPUTS[0], context)
    assert codec.feeds == ("input_ids", "attention_mask") and codec.name == "text"
    assert TextCodec.extra_files(options) == ["tokenizer.json"]
    reference = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    reference.no_padding()
    reference.enable_truncation(16)
    for text in ("A man is playing a guitar.", "word " * 40):
        want = reference.encode(text)
        part = codec.decode(text.encode(), "text/plain")
        assert [t.tolist() for t in part.tensors] == [[want.ids], [want.attention_mask]]
        assert part.info == {"tokens": len(want.ids), "truncated": len(want.overflowing) > 0}


def test_text_options_checked(tmp_path):
    context = CodecContext(tmp_path, TEXT_INPUTS, [])
    with pytest.raises(ValueError, match="tokenizer file"):
        TextCodec.check({}, TEXT_INPUTS[0], context)
    shutil.copy(MODELS / "text_embedder" / "tokenizer.json", tmp_path / "tokenizer.json")
    with pytest.raises(ValueError, match="another model input"):
        TextCodec.check({"mask": "nope"}, TEXT_INPUTS[0], context)
    padded = InputSpec("input_ids", "int64", ("batch", "seq"), {"seq": {"max": 16}}, pad=5)
    with pytest.raises(ValueError, match="pad: 0"):
        TextCodec.check({}, padded, CodecContext(tmp_path, [padded], []))


def test_a_declared_text_input_feeds_the_length_aware_batching(tmp_path):
    """A two-input text model (ids, mask) served by the generic handler with a `text` codec: texts
    decoded as the tokenizer does, and the length planner groups a batch by the texts' true
    lengths, answering as each request alone."""
    from tokenizers import Tokenizer

    from handlers.batching import Planner
    from handlers.codec import check_codecs
    from handlers.tensor import TensorHandler

    shutil.copy(MODELS / "text_embedder" / "tokenizer.json", tmp_path / "tokenizer.json")
    dims = {"batch": {"min": 1, "max": 32}, "seq": {"min": 2, "max": 256}}
    inputs = [InputSpec(n, "int64", ("batch", "seq"), dims) for n in ("input_ids", "attention_mask")]
    outputs = [{"name": "embedding", "dtype": "float32", "shape": ["batch", 4]}]
    declared = {"input_ids": {"kind": "text", "mask": "attention_mask"}}
    codecs = check_codecs(inputs, outputs, declared, {}, None, tmp_path)
    manifest = {"name": "t", "version": "1", "inputs": [dataclasses.asdict(i) for i in inputs], "outputs": outputs}
    handler = TensorHandler()
    handler.configure(manifest | {"codecs": codecs}, tmp_path, {})
    texts = ["A man is playing a guitar.", "Hi", "The quick brown fox jumps over the lazy dog " * 3]
    decoded = handler.preprocess(json.dumps({"text": texts}).encode(), "application/json")
    reference = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    reference.enable_truncation(256)
    reference.enable_padding(pad_id=reference.token_to_id("[PAD]"), pad_token="[PAD]")
    want = reference.encode_batch(texts)
    assert [t.tolist() for t in decoded.inputs] == [[e.ids for e in want], [e.attention_mask for e in want]]

    torch.manual_seed(0)
    table = torch.nn.Embedding(40000, 4)

    def pooled(batch):  # masked mean of token vectors: padding must not change a row's answer
        ids, mask = batch
        return ((table(ids) * mask[..., None]).sum(1) / mask.sum(1, keepdim=True),)

    planner = Planner.for_model(handler.manifest, {"batch_cost": {"a": 1e-3, "b": 1e-6}}, pooled)
    other = handler.preprocess(b"Short one.", "text/plain")
    batch = handler.collate([decoded.inputs, other.inputs])
    assert planner.lengths(batch) == [sum(e.attention_mask) for e in want] + [int(other.inputs[1].sum())]
    with torch.no_grad():
        grouped, stats = planner.run(batch, pooled)
        alone = torch.cat([pooled(decoded.inputs)[0], pooled(other.inputs)[0]])
    assert stats["calls"] > 1 and torch.allclose(grouped[0], alone, atol=1e-6)


def test_audio_declared_from_sample_clips(tmp_path):
    """`make new-model SAMPLES=`: the rate from the clips, [batch, samples] bounded, a window to choose."""
    for name, rate, length in (("a.wav", 8000, 100), ("b.wav", 8000, 300000)):
        (tmp_path / name).write_bytes(pcm16(np.zeros(length, np.int16), rate))
    entry = {"name": "x", "dtype": "float32", "shape": ["batch", "CHOOSE"], "dims": {"batch": {"min": 1, "max": 8}}}
    clips = sorted(tmp_path.glob("*.wav"))
    declared = AudioCodec.from_samples(entry, clips)
    assert declared["shape"] == ["batch", "samples"] and declared["codec"] == {"kind": "audio", "rate": 8000}
    assert declared["dims"] == {"batch": {"min": 1, "max": 8}, "samples": {"min": 1, "max": 300000}}  # > 30 s
    assert "window: CHOOSE" in AudioCodec.spec_lines(declared)[0]
    assert AudioCodec.spec_lines(entry | {"shape": ["batch", 512]}) == []  # fixed clips: one call each
    (tmp_path / "c.wav").write_bytes(pcm16(np.zeros(10, np.int16), 16000))
    with pytest.raises(ValueError, match="different sample rates"):
        AudioCodec.from_samples(entry, sorted(tmp_path.glob("*.wav")))
    (tmp_path / "c.wav").write_bytes(b"RIFF")
    with pytest.raises(ValueError, match="c.wav"):
        AudioCodec.from_samples(entry, sorted(tmp_path.glob("*.wav")))
