"""Issue 17's "done when", for images: an ONNX image classifier made here, with unnamed dynamic
dimensions, becomes a served model with PNG in and label + score out, with no Python and four YAML
values edited after `make new-model ... SAMPLES=<its PNGs>`. In a copy of the project, on a real
TorchServe, every way of sending the PNG (REST raw body, multipart, base64 JSON; v2 JSON base64 and
v2 binary) answers what the ONNX model run directly answers, with the preprocessing written here
(PIL + numpy), independently of the image codec."""

from __future__ import annotations

import base64
import io
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import requests
import torch
import tritonclient.http as triton
from PIL import Image

from client.register import sync
from client.server import Server
from tests.integration.test_own_model import project, run  # noqa: F401 - the project copy fixture

NAME = "pngclf"
LABELS = ["cat", "dog", "bird", "fish", "frog", "newt"]
HEIGHT, WIDTH, MEAN, STD, TOP = 16, 24, 0.5, 0.25, 3


def make_classifier(folder: Path) -> Path:
    """A tiny conv net exported to ONNX, then its dynamic dimensions made unnamed (as many exporters
    write them: no dim_param at all)."""
    import onnx

    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(4, len(LABELS)),
    ).eval()
    path = folder / "classifier.onnx"
    axes = {"pixels": {0: "b", 2: "h", 3: "w"}, "logits": {0: "b"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        example = (torch.randn(2, 3, HEIGHT, WIDTH),)
        torch.onnx.export(net, example, str(path), input_names=["pixels"], output_names=["logits"], dynamic_axes=axes)
    graph = onnx.load(str(path))
    for value in [*graph.graph.input, *graph.graph.output]:
        for dim in value.type.tensor_type.shape.dim:
            if dim.HasField("dim_param"):
                dim.ClearField("dim_param")
    onnx.save(graph, str(path))
    return path


def make_samples(folder: Path) -> Path:
    """Three PNGs at the model's size and one larger (resized by the codec)."""
    rng = np.random.default_rng(1)
    samples = folder / "pngs"
    samples.mkdir()
    for i, (h, w) in enumerate([(HEIGHT, WIDTH)] * 3 + [(30, 41)]):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(samples / f"photo{i}.png")
    return samples


def reference(onnx_path: Path, png: bytes) -> tuple[np.ndarray, list[dict]]:
    """The ONNX model on the PNG, preprocessed here: RGB, bilinear to 24x16, (p/255 - 0.5)/0.25, NCHW,
    softmax, top 3 with the labels."""
    import onnxruntime as ort

    image = Image.open(io.BytesIO(png)).convert("RGB").resize((WIDTH, HEIGHT), Image.Resampling.BILINEAR)
    x = ((np.asarray(image, np.float32) / 255 - MEAN) / STD).transpose(2, 0, 1)[None]
    (logits,) = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).run(None, {"pixels": x})
    exp = np.exp(logits[0].astype(np.float64) - logits[0].max())
    probabilities = exp / exp.sum()
    top = np.argsort(-probabilities)[:TOP]
    return x, [{"label": LABELS[i], "probability": float(probabilities[i])} for i in top]


@pytest.fixture(scope="module")
def served(project, tmp_path_factory):  # noqa: F811 - the fixture imported above
    files = tmp_path_factory.mktemp("user")
    onnx_path, pngs = make_classifier(files), make_samples(files)
    run(project, "make", "new-model", f"NAME={NAME}", f"FROM={onnx_path}", f"SAMPLES={pngs}")
    folder = project / "models" / NAME
    (folder / "labels.txt").write_text("\n".join(LABELS) + "\n")
    spec = folder / "spec.yaml"
    text = spec.read_text()
    edits = [("labels: null", "labels: labels.txt"), ("top_k: 5", f"top_k: {TOP}")]
    edits += [("mean: 0.0", f"mean: {MEAN}"), ("std: 1.0", f"std: {STD}")]  # the four YAML values edited
    for old, new in edits:
        assert text.count(old) == 1, (old, text)
        text = text.replace(old, new)
    spec.write_text(text)
    (folder / "samples" / "expected.json").unlink()  # README: regenerate the expected answers after an edit
    run(project, "make", "new-model", f"NAME={NAME}")
    run(project, "make", "archive")
    work, store = tmp_path_factory.mktemp("torchserve"), project / "model_store"
    with Server.throwaway(store, work, base=project / "config.properties") as server:
        sync(server.client(), [NAME], False, store, work / "registered.json")
        yield server, onnx_path, sorted((folder / "samples").glob("*.png"))


def same(got: list[dict], want: list[dict]) -> None:
    assert [g["label"] for g in got] == [w["label"] for w in want], (got, want)
    np.testing.assert_allclose([g["probability"] for g in got], [w["probability"] for w in want], atol=2e-6)


def test_png_in_label_and_score_out_over_every_path(served):
    server, onnx_path, pngs = served
    token = json.loads(server.key_file.read_text())["inference"]["key"]
    auth = {"Authorization": f"Bearer {token}"}
    url = server.address("inference")
    v2 = triton.InferenceServerClient(url.removeprefix("http://"), network_timeout=120)
    assert len(pngs) == 4
    for path in pngs:
        png, (x, want) = path.read_bytes(), reference(onnx_path, path.read_bytes())
        raw = requests.post(f"{url}/predictions/{NAME}", data=png, headers=auth | {"Content-Type": "image/png"})
        form = requests.post(f"{url}/predictions/{NAME}", files={"data": (path.name, png, "image/png")}, headers=auth)
        b64 = base64.b64encode(png).decode()
        as_json = requests.post(f"{url}/predictions/{NAME}", json={"pixels": b64}, headers=auth)
        tensor = requests.post(f"{url}/predictions/{NAME}", json={"pixels": x[0].tolist()}, headers=auth)
        for answer in (raw, form, as_json, tensor):  # the raw tensor too: one folder serves both forms
            assert answer.status_code == 200, answer.text
            same(answer.json(), want)
        element = {"name": "pixels", "shape": [1], "datatype": "BYTES", "data": [b64]}
        v2_json = requests.post(f"{url}/v2/models/{NAME}/infer", json={"inputs": [element]}, headers=auth)
        assert v2_json.status_code == 200, v2_json.text
        outputs = {o["name"]: o for o in v2_json.json()["outputs"]}
        assert outputs["label"]["datatype"] == "BYTES" and outputs["label"]["shape"] == [1, TOP]
        same(records(outputs["label"]["data"], outputs["probability"]["data"]), want)
        tensor = triton.InferInput("pixels", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([png], dtype=object), binary_data=True)
        result = v2.infer(NAME, [tensor], headers=dict(auth))  # tritonclient adds its headers to the dict
        labels = [x.decode() if isinstance(x, bytes) else x for x in result.as_numpy("label").reshape(-1)]
        same(records(labels, result.as_numpy("probability").reshape(-1)), want)


def records(labels, probabilities) -> list[dict]:
    return [{"label": k, "probability": float(p)} for k, p in zip(labels, probabilities, strict=True)]


def test_bad_files_get_a_4xx_saying_what_is_expected(served):
    server, _, pngs = served
    token = json.loads(server.key_file.read_text())["inference"]["key"]
    url, auth = server.address("inference"), {"Authorization": f"Bearer {token}"}
    png = pngs[0].read_bytes()
    cases = [
        (png[: len(png) // 2], "image/png", 400, "not a readable PNG or JPEG or WEBP image"),
        (b"<x/>", "application/xml", 415, "content type 'application/xml' is not supported; send"),
        (json.dumps({"pixels": "not base64!"}).encode(), "application/json", 400, "not valid base64"),
    ]
    for body, ctype, status, words in cases:
        answer = requests.post(f"{url}/predictions/{NAME}", data=body, headers=auth | {"Content-Type": ctype})
        assert answer.status_code == status and words in answer.json()["message"], answer.text
    assert requests.post(f"{url}/predictions/{NAME}", data=png, headers=auth | {"Content-Type": "image/png"}).ok
