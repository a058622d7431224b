"""A stateful TorchScript audio model served from its .jit file alone, as the README tells a new user:
`make new-model SAMPLES=`, one YAML value, `make archive`, a real TorchServe. WAV in (REST raw body,
v2 BYTES) → per-window scores and segments, equal to the model called in a loop here, window by
window, on samples read here from the WAV bytes this test wrote. Two different clips in a row prove
the state is reset per request; hostile WAV bodies get 4xx answers and the worker stays.
"""

from __future__ import annotations

import base64
import json
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import requests
import torch

from client.register import sync
from client.server import Server
from tests.support import copy_project

RATE, WINDOW, THRESHOLD = 16000, 512, 0.5


class TinyVad(torch.nn.Module):
    """Per 512-sample window a speech score from the window's energy and a running state (a
    leaky sum), like a recurrent voice-activity detector; exactly 512 samples per call."""

    def __init__(self):
        super().__init__()
        self.register_buffer("state", torch.zeros(1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != 512:
            raise ValueError("TinyVad takes windows of exactly 512 samples")
        energy = x.pow(2).mean(dim=1, keepdim=True)  # [batch, 1]
        self.state = 0.5 * self.state + energy
        return torch.sigmoid(50.0 * (self.state - 0.02))  # [batch, 1]

    @torch.jit.export
    def reset_state(self) -> None:
        self.state = torch.zeros(1, 1)


def tone(seconds: float, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return amplitude * np.sin(2 * np.pi * 440 * t)


def quiet(seconds: float) -> np.ndarray:
    return np.random.default_rng(int(seconds * 1000)).normal(0, 0.001, int(seconds * RATE))


# Clip A ends in speech (a state left unreset would make clip B's first windows speech).
CLIPS = {
    "a": np.concatenate([quiet(0.3), tone(0.7)]),
    "b": np.concatenate([tone(0.3), quiet(0.4), tone(0.3), quiet(0.5)]),
}


def wav_bytes(frames: np.ndarray, bits: int = 16, rate: int = RATE) -> bytes:
    """A RIFF/WAVE file: int16 PCM, or float32 (format 3) when ``bits`` is 32; frames [n] or [n, channels]."""
    frames = frames if frames.ndim == 2 else frames[:, None]
    if bits == 16:
        raw, code = np.round(frames * 32767).astype("<i2").tobytes(), 1
    else:
        raw, code = frames.astype("<f4").tobytes(), 3
    channels = frames.shape[1]
    fmt = struct.pack("<HHIIHH", code, channels, rate, rate * channels * bits // 8, channels * bits // 8, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(raw)) + raw
    return b"RIFF" + struct.pack("<I", len(body)) + body


def samples_of(frames: np.ndarray, bits: int = 16) -> np.ndarray:
    """What the WAV written by ``wav_bytes`` holds, as float32 mono in [-1, 1] (independently of the kit)."""
    frames = frames if frames.ndim == 2 else frames[:, None]
    if bits == 16:
        values = np.round(frames * 32767).astype(np.int16).astype(np.float32) / 32768
    else:
        values = frames.astype(np.float32)
    return values.mean(axis=1, dtype=np.float32)


def in_a_loop(jit: Path, samples: np.ndarray) -> list[float]:
    """The model called window by window after its reset, the last window zero-filled: the reference."""
    model = torch.jit.load(str(jit))
    model.reset_state()
    padded = np.zeros(-(-len(samples) // WINDOW) * WINDOW, np.float32)
    padded[: len(samples)] = samples
    with torch.inference_mode():
        return [
            float(model(torch.from_numpy(padded[k : k + WINDOW])[None])[0, 0]) for k in range(0, len(padded), WINDOW)
        ]


def speech(scores: list[float], seconds: float) -> list[dict]:
    """Runs of windows scoring at least the threshold, in seconds, the last cut at the clip's end."""
    found, start = [], None
    for k, score in enumerate([*scores, 0.0]):
        if score >= THRESHOLD and start is None:
            start = k
        elif score < THRESHOLD and start is not None:
            found.append({"start": round(start * WINDOW / RATE, 6), "end": round(min(k * WINDOW / RATE, seconds), 6)})
            start = None
    return found


def run(project: Path, *command: str) -> str:
    done = subprocess.run(command, cwd=project, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


# The user's one edit after `make new-model SAMPLES=`: the window; the rest is read from the file and the clips.
EDITS = [("window: CHOOSE}", f"window: {WINDOW}}}")]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The .jit scaffolded with its WAV samples, one value edited, archived and registered."""
    project = copy_project(tmp_path_factory.mktemp("project"))
    made = tmp_path_factory.mktemp("user")
    jit = made / "vad.jit"
    torch.jit.script(TinyVad()).save(str(jit))
    (made / "clips").mkdir()
    for name, frames in CLIPS.items():
        (made / "clips" / f"{name}.wav").write_bytes(wav_bytes(frames))
    run(project, "make", "new-model", "NAME=vad", f"FROM={jit}", f"SAMPLES={made / 'clips'}")
    spec = project / "models" / "vad" / "spec.yaml"
    text = spec.read_text()
    for old, new in EDITS:
        assert old in text, f"{old!r} not in the scaffolded spec:\n{text}"
        text = text.replace(old, new, 1)
    spec.write_text(text)
    run(project, "make", "new-model", "NAME=vad")
    run(project, "make", "archive")
    work, store = tmp_path_factory.mktemp("torchserve"), project / "model_store"
    with Server.throwaway(store, work, base=project / "config.properties") as server:
        sync(server.client(), ["vad"], False, store, work / "registered.json")
        yield server, jit, project


def post(server, path: str, **kwargs) -> requests.Response:
    token = json.loads(server.key_file.read_text())["inference"]["key"]
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    return requests.post(f"{server.address('inference')}{path}", headers=headers, timeout=60, **kwargs)


def assert_answer(answer: dict, jit: Path, frames: np.ndarray, bits: int = 16) -> None:
    samples = samples_of(frames, bits)
    want = in_a_loop(jit, samples)
    np.testing.assert_allclose(answer["scores"], want, atol=1e-5, rtol=1e-5)
    assert answer["segments"] == speech(want, len(samples) / RATE)
    assert answer["segments"], "the clips hold speech: no segment means the test proves nothing"


def test_rest_wav_answers_as_the_model_in_a_loop(served):
    server, jit, _ = served
    for name in ("a", "b", "a"):  # different clips in a row: each starts from a cleared state
        answer = post(server, "/predictions/vad", data=wav_bytes(CLIPS[name]), headers={"Content-Type": "audio/wav"})
        assert answer.status_code == 200, answer.text
        assert_answer(answer.json(), jit, CLIPS[name])
    stereo = np.stack([CLIPS["b"], 0.5 * CLIPS["b"]], axis=1)  # float32, two channels: mixed down
    answer = post(server, "/predictions/vad", data=wav_bytes(stereo, 32), headers={"Content-Type": "audio/wav"})
    assert answer.status_code == 200, answer.text
    assert_answer(answer.json(), jit, stereo, 32)


def test_v2_bytes_answers_as_the_model_in_a_loop(served):
    import tritonclient.http as triton

    server, jit, _ = served
    token = json.loads(server.key_file.read_text())["inference"]["key"]
    v2 = triton.InferenceServerClient(server.address("inference").removeprefix("http://"))
    for name in ("b", "a"):
        clip = triton.InferInput("x", [1], "BYTES")
        clip.set_data_from_numpy(np.array([wav_bytes(CLIPS[name])], dtype=object))
        result = v2.infer("vad", [clip], headers={"Authorization": f"Bearer {token}"})
        answer = {
            "scores": result.as_numpy("scores")[0].tolist(),
            "segments": json.loads(result.as_numpy("segments")[0]),
        }
        assert_answer(answer, jit, CLIPS[name])


def hostile() -> dict[str, bytes]:
    good = wav_bytes(CLIPS["a"])
    return {
        "not a WAV": b"OggS" + good[4:200],
        "truncated": good[: len(good) // 2],
        "huge data size": good[:40] + struct.pack("<I", 0xFFFFFFF0) + good[44:1000],
        "no channels": good[:22] + struct.pack("<H", 0) + good[24:],
        "odd block align": good[:32] + struct.pack("<H", 3) + good[34:],
        "another rate": wav_bytes(CLIPS["a"], rate=8000),
        "too long": wav_bytes(np.zeros(30 * RATE + 1)),  # new-model bounds clips at 30 s
    }


@pytest.mark.parametrize("name", list(hostile()))
def test_hostile_wavs_get_4xx_and_the_worker_stays(served, name):
    server, jit, _ = served
    body = hostile()[name]
    answer = post(server, "/predictions/vad", data=body, headers={"Content-Type": "audio/wav"})
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    assert answer.json()["message"]
    if name == "another rate":
        assert "8000" in answer.json()["message"] and "16000" in answer.json()["message"]
    if name in ("truncated", "another rate"):  # the same through v2 JSON: a BYTES element is base64 of the file
        element = base64.b64encode(body).decode()
        v2 = {"inputs": [{"name": "x", "shape": [1], "datatype": "BYTES", "data": [element]}]}
        answer = post(server, "/v2/models/vad/infer", json=v2)
        assert 400 <= answer.status_code < 500 and answer.json()["error"], (answer.status_code, answer.text)
    again = post(server, "/predictions/vad", data=wav_bytes(CLIPS["b"]), headers={"Content-Type": "audio/wav"})
    assert again.status_code == 200, again.text
    assert_answer(again.json(), jit, CLIPS["b"])


def test_new_model_wrote_the_loop_answers_and_only_the_folder(served):
    _, jit, project = served
    folder = project / "models" / "vad"
    expected = json.loads((folder / "samples" / "expected.json").read_text())
    for name, frames in CLIPS.items():
        assert_answer(expected[f"{name}.wav"], jit, frames)
    assert not (folder / "handler.py").exists()  # no Python: the .jit and YAML
    status = subprocess.run(["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True).stdout
    changed = [line[3:] for line in status.splitlines()]
    assert changed and all(path.startswith("models/vad/") for path in changed), changed
