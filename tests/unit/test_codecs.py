"""The image input codec and the classes output codec, option by option, against references computed
by hand here; hostile inputs (corrupt, too large, bad base64, wrong content type) get a 4xx saying what
is expected; and the spec refuses a wrong declaration at load with a sentence naming it.

The handler is the generic one, in process, over a tiny TorchScript "echo" model whose output is its
input flattened: the answer is exactly the tensor the codec made."""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from handlers.artifact import sha256_of
from handlers.codec import check_codecs
from handlers.tensor import TensorHandler
from tests.support import make_context, run_handler


class Echo(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1).float()


class Scores(torch.nn.Module):
    """The first row of the image, as class scores (so a test chooses the scores by its pixels)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0, 0, :].float()


def folder_for(root: Path, shape: list, codec: dict, out_codec: dict | None = None, model=None, dtype="float32"):
    """An unpacked archive of a one-input model with declared codecs, as the worker sees it."""
    (root / "MAR-INF").mkdir(parents=True)
    (root / "MAR-INF" / "MANIFEST.json").write_text(json.dumps({"model": {"modelName": "echo"}}))
    (root / "model-config.yaml").write_text("handler: {threads: 1}\n")
    torch.jit.script(model or Echo()).save(str(root / "m.pt"))
    dims = {"batch": {"min": 1, "max": 8}}
    inputs = [{"name": "image", "dtype": dtype, "shape": shape, "dims": dims}]
    from handlers.schema import input_specs

    outputs = [
        {"name": "out", "dtype": "float32", "shape": ["batch", out_codec.pop("_classes", 4) if out_codec else 4]}
    ]
    manifest = {"name": "echo", "version": "1", "format": "torchscript", "artifact": "m.pt", "inputs": inputs}
    declared = {"image": codec}, ({"out": out_codec} if out_codec else {})
    manifest["codecs"] = check_codecs(input_specs(manifest), outputs, *declared, None, root)
    manifest |= {"sha256": sha256_of(root / "m.pt"), "outputs": outputs}
    (root / "manifest.json").write_text(json.dumps(manifest))
    handler = TensorHandler()
    handler.initialize(make_context(root, []))
    return handler


def png(pixels: np.ndarray, mode: str | None = None, fmt: str = "PNG") -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), mode).save(out, format=fmt)
    return out.getvalue()


def send(handler, root, body, ctype="image/png", name="body"):
    [(status, answer)] = run_handler(handler, root, [(body, ctype)], name=name)
    return status, answer


GRAY = np.array([[0, 255], [51, 102]])


def test_gray_scale_mean_std_nchw(tmp_path):
    h = folder_for(tmp_path, ["batch", 1, 2, 2], {"kind": "image", "mean": 0.5, "std": 0.5})
    status, answer = send(h, tmp_path, png(GRAY))
    assert status == 200, answer
    # by hand: (p/255 - 0.5)/0.5 for 0, 255, 51, 102
    np.testing.assert_allclose(answer["out"], [-1.0, 1.0, -0.6, -0.2], atol=1e-6)


def test_rgb_bgr_per_channel_and_layouts(tmp_path):
    pixel = np.array([[[10, 20, 30]]])
    codec = {"kind": "image", "scale": 1, "mean": [1, 2, 3], "std": [1, 2, 3]}
    rgb = folder_for(tmp_path / "rgb", ["batch", 3, 1, 1], codec)
    assert send(rgb, tmp_path / "rgb", png(pixel))[1]["out"] == [9.0, 9.0, 9.0]  # (10-1)/1, (20-2)/2, (30-3)/3
    bgr = folder_for(tmp_path / "bgr", ["batch", 3, 1, 1], {"kind": "image", "mode": "BGR", "scale": 1})
    assert send(bgr, tmp_path / "bgr", png(pixel))[1]["out"] == [30.0, 20.0, 10.0]
    two = np.array([[[1, 2, 3], [4, 5, 6]]])  # 1x2 RGB: NCHW is channel-major, NHWC pixel-major
    nchw = folder_for(tmp_path / "nchw", ["batch", 3, 1, 2], {"kind": "image", "scale": 1})
    assert send(nchw, tmp_path / "nchw", png(two))[1]["out"] == [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
    nhwc = folder_for(tmp_path / "nhwc", ["batch", 1, 2, 3], {"kind": "image", "scale": 1, "layout": "NHWC"})
    assert send(nhwc, tmp_path / "nhwc", png(two))[1]["out"] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_integer_dtype_takes_pixels_as_they_are(tmp_path):
    h = folder_for(tmp_path, ["batch", 2, 2], {"kind": "image"}, dtype="uint8")  # NHW, L
    assert send(h, tmp_path, png(GRAY))[1]["out"] == [0.0, 255.0, 51.0, 102.0]


def test_fit_height_pads_right_fit_width_pads_bottom(tmp_path):
    row = np.array([[10, 20]])  # 1 high, 2 wide
    codec = {"kind": "image", "fit": "height", "resample": "nearest", "scale": 1, "pad": 7}
    h = folder_for(tmp_path / "h", ["batch", 1, 2, 6], codec)
    # height 1 -> 2 keeps the ratio: 4 wide ([10, 10, 20, 20] per row), then padded with 7 to 6
    assert send(h, tmp_path / "h", png(row))[1]["out"] == [10, 10, 20, 20, 7, 7] * 2
    column = np.array([[10], [20]])  # 2 high, 1 wide
    codec = {"kind": "image", "fit": "width", "resample": "nearest", "scale": 1, "pad": 7}
    w = folder_for(tmp_path / "w", ["batch", 1, 5, 2], codec)
    # width 1 -> 2: 4 high, then padded at the bottom to 5
    assert send(w, tmp_path / "w", png(column))[1]["out"] == [10, 10, 10, 10, 20, 20, 20, 20, 7, 7]


def test_fit_crop_cuts_the_centre_and_stretch_resizes(tmp_path):
    image = np.tile(np.arange(6) * 10, (4, 1))  # 4 high, 6 wide, columns 0, 10, ... 50
    image[0] += 1  # rows tell apart: row 0 is +1
    codec = {"kind": "image", "fit": "crop", "shorter": 4, "resample": "nearest", "scale": 1}
    c = folder_for(tmp_path / "c", ["batch", 1, 2, 2], codec)
    # shorter side 4 = as is; centre 2x2: rows 1-2, columns 2-3
    assert send(c, tmp_path / "c", png(image))[1]["out"] == [20, 30, 20, 30]
    s = folder_for(tmp_path / "s", ["batch", 1, 2, 3], {"kind": "image", "resample": "nearest", "scale": 1})
    # 4x6 -> 2x3 nearest: rows 1 and 3 (centres), columns 1, 3, 5
    assert send(s, tmp_path / "s", png(image))[1]["out"] == [10, 30, 50, 10, 30, 50]


def test_every_way_to_send_the_file_gives_the_same_tensor(tmp_path):
    h = folder_for(tmp_path, ["batch", 1, 2, 2], {"kind": "image"})
    body = png(GRAY)
    want = [0.0, 1.0, 0.2, 0.4]
    b64 = base64.b64encode(body).decode()
    assert send(h, tmp_path, body)[1]["out"] == pytest.approx(want)
    assert send(h, tmp_path, body, name="data")[1]["out"] == pytest.approx(want)  # a form field
    assert send(h, tmp_path, body, "application/octet-stream")[1]["out"] == pytest.approx(want)
    webp = png(GRAY, fmt="WEBP")  # lossy by default: still the right size
    assert len(send(h, tmp_path, webp, "image/webp")[1]["out"]) == 4
    assert send(h, tmp_path, json.dumps({"image": b64}).encode(), "application/json")[1]["out"] == pytest.approx(want)
    batch = send(h, tmp_path, json.dumps({"image": [b64, b64]}).encode(), "application/json")[1]
    assert [a["out"] for a in batch] == [pytest.approx(want)] * 2
    raw = send(h, tmp_path, json.dumps({"image": [[[0.5, 0.5], [0.5, 0.5]]]}).encode(), "application/json")[1]
    assert raw["out"] == [0.5] * 4  # the raw tensor still works: one folder, both forms
    v2 = {"inputs": [{"name": "image", "shape": [1], "datatype": "BYTES", "data": [b64]}]}
    out = send(h, tmp_path, json.dumps(v2).encode(), "application/json")[1]["outputs"][0]
    assert out["shape"] == [1, 4] and out["data"] == pytest.approx(want)
    header = json.dumps(
        {
            "inputs": [
                {"name": "image", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(body) + 4}}
            ]
        }
    ).encode()
    ctx = make_context(tmp_path, [("body", "application/octet-stream")])
    ctx.request_processor[0]._request_header["inference-header-content-length"] = str(len(header))  # noqa: SLF001
    answer = h.handle([{"body": header + len(body).to_bytes(4, "little") + body}], ctx)
    assert json.loads(answer[0])["outputs"][0]["data"] == pytest.approx(want)


def test_hostile_inputs_get_a_4xx_saying_what_is_expected(tmp_path):
    h = folder_for(tmp_path, ["batch", 1, 2, 2], {"kind": "image", "max_pixels": 100, "formats": ["png"]})
    body = png(GRAY)
    cases = [
        (body[: len(body) // 2], "image/png", 400, "not a readable PNG image"),
        (b"GIF89a....", "image/png", 400, "not a readable PNG image"),
        (png(np.zeros((20, 20))), "image/png", 422, "at most 100 pixels"),
        (png(GRAY, fmt="WEBP"), "image/webp", 415, "content type 'image/webp' is not supported"),
        (b"<xml/>", "application/xml", 415, "content type 'application/xml' is not supported; send"),
        (json.dumps({"image": "%%%not base64"}).encode(), "application/json", 400, "not valid base64"),
        (json.dumps({"image": ["a", 1]}).encode(), "application/json", 422, '"image"'),
    ]
    for raw, ctype, status, words in cases:
        got, error = send(h, tmp_path, raw, ctype)
        assert got == status and words in error["message"], (words, error)
    assert "image/png" in send(h, tmp_path, b"x", "text/plain")[1]["message"]  # the 415 lists what to send
    rgba = png(np.dstack([np.array(GRAY)] * 4), "RGBA")  # another mode: converted, not refused
    assert send(h, tmp_path, rgba)[0] == 200


def test_classes_top_k_softmax_and_labels(tmp_path):
    (tmp_path / "labels.txt").write_text("cat\ndog\nbird\n")
    codec = {"kind": "classes", "labels": "labels.txt", "softmax": True, "top_k": 2, "_classes": 3}
    h = folder_for(tmp_path, ["batch", 1, 1, 3], {"kind": "image", "scale": 1}, codec, Scores())
    status, answer = send(h, tmp_path, png(np.array([[1, 3, 2]])))
    total = math.exp(1) + math.exp(3) + math.exp(2)  # by hand
    assert status == 200 and [a["label"] for a in answer] == ["dog", "bird"], answer
    assert [a["probability"] for a in answer] == pytest.approx([math.exp(3) / total, math.exp(2) / total], abs=1e-6)
    v2 = {
        "inputs": [
            {
                "name": "image",
                "shape": [1],
                "datatype": "BYTES",
                "data": [base64.b64encode(png(np.array([[1, 3, 2]]))).decode()],
            }
        ]
    }
    outputs = send(h, tmp_path, json.dumps(v2).encode(), "application/json")[1]["outputs"]
    assert outputs[0] == {"name": "label", "shape": [1, 2], "datatype": "BYTES", "data": ["dog", "bird"]}
    assert outputs[1]["name"] == "probability" and outputs[1]["shape"] == [1, 2]


def test_classes_without_labels_or_softmax_are_indices_and_scores(tmp_path):
    codec = {"kind": "classes", "top_k": 3, "_classes": 3}
    h = folder_for(tmp_path, ["batch", 1, 1, 3], {"kind": "image", "scale": 1}, codec, Scores())
    answer = send(h, tmp_path, png(np.array([[5, 9, 7]])))[1]
    assert answer == [{"label": 1, "score": 9.0}, {"label": 2, "score": 7.0}, {"label": 0, "score": 5.0}]


@pytest.mark.parametrize(
    ("codec", "words"),
    [
        ({"kind": "image", "colour": "RGB"}, "unknown option(s) ['colour']"),
        ({"kind": "image", "mode": "RGB"}, "mode must be L (1 channel)"),
        ({"kind": "image", "fit": "zoom"}, "fit must be one of"),
        ({"kind": "image", "formats": ["gif"]}, "formats must be a list of"),
        ({"kind": "image", "std": [1, 2]}, "std must be a number or a list of 1 numbers"),
        ({"kind": "picture"}, "not an input kind"),
    ],
)
def test_a_wrong_declaration_is_refused_at_load(tmp_path, codec, words):
    from handlers.schema import InputSpec

    spec = InputSpec("image", "float32", ("batch", 1, 8, 8), {})
    with pytest.raises(ValueError, match=None) as err:
        check_codecs([spec], [], {"image": codec}, {}, None, tmp_path)
    assert words in str(err.value), str(err.value)


def test_a_wrong_classes_declaration_is_refused_at_load(tmp_path):
    from handlers.schema import InputSpec

    (tmp_path / "labels.txt").write_text("a\nb\n")
    spec = InputSpec("image", "float32", ("batch", 1, 8, 8), {})
    out = {"name": "logits", "dtype": "float32", "shape": ["batch", 3]}
    for codec, words in [
        ({"kind": "classes", "labels": "labels.txt"}, "holds 2 labels; the output has 3 classes"),
        ({"kind": "classes", "labels": "missing.txt"}, "is not in"),
        ({"kind": "classes", "top_k": 4}, "top_k must be an integer from 1"),
        ({"kind": "boxes"}, "not an output kind"),
    ]:
        with pytest.raises(ValueError) as err:
            check_codecs([spec], [out], {}, {"logits": codec}, None, tmp_path)
        assert words in str(err.value), str(err.value)


def test_bytes_outputs_follow_the_one_rule_the_readme_states():
    from handlers.oip import response

    items = [{"tag": ["a", "é"], "word": "x", "note": None, "mixed": ["a", 1]}, {"tag": ["b", "c"], "word": "y"}]
    fields = {"tag": "BYTES", "word": "BYTES", "note": "BYTES", "mixed": "FP32"}
    outputs = {o["name"]: o for o in response("m", "1", None, fields, items)["outputs"]}
    assert outputs["tag"] == {"name": "tag", "shape": [2, 2], "datatype": "BYTES", "data": ["a", "é", "b", "c"]}
    assert outputs["word"] == {"name": "word", "shape": [2], "datatype": "BYTES", "data": ["x", "y"]}
    assert outputs["note"]["data"] == ["null", "null"] and outputs["note"]["shape"] == [2]  # JSON text per instance
    assert outputs["mixed"]["datatype"] == "BYTES" and outputs["mixed"]["data"] == ['["a", 1]', "null"]


def test_a_custom_handler_gets_the_contracts_rules_from_the_base(tmp_path):
    """README's two hooks: ``info`` may be one plain value (the base makes it one entry per instance,
    also for v2 BYTES elements), the v2 answer is built from the fields, a 415 names the type received."""
    from handlers.base import Decoded, ManifestHandler
    from handlers.errors import UnsupportedMediaType

    class Tagged(ManifestHandler):
        fields = {"out": "FP32", "tag": "BYTES"}
        v2_inputs = ("image",)

        def decode(self, body, content_type):
            if content_type not in ("application/octet-stream", ""):
                raise UnsupportedMediaType("send application/octet-stream: 4 bytes")
            x = torch.frombuffer(bytearray(body), dtype=torch.uint8).float().reshape(1, 1, 2, 2)
            return Decoded((x,), True, "one")

        def encode(self, outputs, decoded):
            return [{"out": row, "tag": decoded.info[i]} for i, row in enumerate(outputs[0].tolist())]

    folder_for(tmp_path, ["batch", 1, 2, 2], {"kind": "image"})
    handler = Tagged()
    handler.initialize(make_context(tmp_path, []))
    assert send(handler, tmp_path, b"\x01\x02\x03\x04", "application/octet-stream")[1] == {
        "out": [1.0, 2.0, 3.0, 4.0],
        "tag": "one",
    }
    status, error = send(handler, tmp_path, b"x", "text/plain")
    assert (
        status == 415
        and error["message"] == "content type 'text/plain' is not supported; send application/octet-stream: 4 bytes"
    )
    entry = {"name": "image", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 16}}
    header = json.dumps({"inputs": [entry]}).encode()
    ctx = make_context(tmp_path, [("body", "application/octet-stream")])
    ctx.request_processor[0]._request_header["inference-header-content-length"] = str(len(header))  # noqa: SLF001
    element = (4).to_bytes(4, "little")
    answer = handler.handle([{"body": header + element + b"\x01\x02\x03\x04" + element + b"\x05\x06\x07\x08"}], ctx)
    outputs = json.loads(answer[0])["outputs"]
    assert outputs[0] == {"name": "out", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6, 7, 8]}
    assert outputs[1] == {"name": "tag", "shape": [2], "datatype": "BYTES", "data": ["one", "one"]}
