"""The Open Inference Protocol (v2) codec: JSON and binary-extension requests, responses."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from handlers.errors import InvalidInput, MalformedRequest
from handlers.oip import parse_request, response


def test_plain_rest_bodies_are_not_v2():
    assert parse_request({"image": [[0] * 8] * 8}) is None
    assert parse_request(b"\x89PNG\r\n") is None
    assert parse_request("vibration,temperature\n1,2") is None


def test_json_request_becomes_arrays():
    doc = {"id": "r1", "inputs": [{"name": "window", "shape": [2, 3], "datatype": "FP32", "data": [1, 2, 3, 4, 5, 6]}]}
    for body in (doc, json.dumps(doc).encode()):
        request = parse_request(body)
        name, value = request.only_input()
        assert request.id == "r1" and name == "window"
        assert value.dtype == np.float32 and value.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_binary_extension_as_tritonclient_sends_it():
    window = np.arange(8, dtype=np.float32).reshape(2, 4)
    texts = [b"hello", b"w\xc3\xb6rld"]
    packed = b"".join(struct.pack("<I", len(t)) + t for t in texts)
    header = json.dumps(
        {
            "inputs": [
                {"name": "w", "shape": [2, 4], "datatype": "FP32", "parameters": {"binary_data_size": window.nbytes}},
                {"name": "t", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": len(packed)}},
            ]
        }
    ).encode()
    request = parse_request(header + window.tobytes() + packed, header_length=str(len(header)))
    assert request.inputs["w"].tolist() == window.tolist()
    assert request.inputs["t"] == texts


@pytest.mark.parametrize(
    ("doc", "error", "words"),
    [
        ({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1, 2, 3]}]}, InvalidInput, "3 values"),
        (
            {"inputs": [{"name": "x", "shape": [1], "datatype": "FLOAT", "data": [1]}]},
            InvalidInput,
            "not a v2 datatype",
        ),
        ({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32", "data": ["a"]}]}, InvalidInput, "must be numbers"),
        ({"inputs": [{"name": "x", "shape": "1", "datatype": "FP32", "data": [1]}]}, InvalidInput, "shape must be"),
        ({"inputs": [{"name": "x", "datatype": "FP32"}]}, MalformedRequest, "needs"),
        ({"inputs": [{"name": "x", "shape": [1], "datatype": "FP32"}]}, MalformedRequest, "neither"),
    ],
)
def test_bad_v2_requests_say_what_is_wrong(doc, error, words):
    with pytest.raises(error, match=words):
        parse_request(doc)


def test_exactly_one_input_is_expected():
    doc = {"inputs": [{"name": n, "shape": [1], "datatype": "FP32", "data": [1]} for n in ("a", "b")]}
    with pytest.raises(InvalidInput, match="exactly one input"):
        parse_request(doc).only_input()


def test_response_batches_each_field():
    digits = [[{"label": 3, "probability": 0.9}, {"label": 5, "probability": 0.1}]] * 2
    out = response("digits", "1.0", "r1", digits)
    assert out["id"] == "r1" and out["model_name"] == "digits"
    assert out["outputs"] == [
        {"name": "label", "shape": [2, 2], "datatype": "INT64", "data": [3, 5, 3, 5]},
        {"name": "probability", "shape": [2, 2], "datatype": "FP32", "data": [0.9, 0.1, 0.9, 0.1]},
    ]
    sensor = [{"score": 0.5, "anomaly": True, "per_channel_error": {"a": 1.0, "b": 2.0}}]
    names = {o["name"]: o for o in response("s", "1.0", None, sensor)["outputs"]}
    assert names["anomaly"] == {"name": "anomaly", "shape": [1], "datatype": "BOOL", "data": [True]}
    assert names["per_channel_error"]["shape"] == [1, 2]
