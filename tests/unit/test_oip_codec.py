"""The Open Inference Protocol (v2) codec: typed, bounded requests; responses under declared names."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from handlers.errors import InvalidInput, MalformedRequest
from handlers.oip import Limits, looks_like_v2, parse_request, response

LIMITS = Limits(inputs=2, elements=64, items=8)


def tensor(name="x", shape=(2, 3), datatype="FP32", **extra) -> dict:
    return {"name": name, "shape": list(shape), "datatype": datatype} | extra


def test_plain_rest_bodies_are_not_v2():
    assert not looks_like_v2({"image": [[0] * 8] * 8})
    assert not looks_like_v2(b"\x89PNG\r\n")
    assert not looks_like_v2("vibration,temperature\n1,2")
    assert not looks_like_v2(b'{"inputs": {"x": [1, 2]}}')  # the tensor handler's REST form
    assert looks_like_v2(b'{"inputs" : [{"name": "x"}]}')


def test_json_request_becomes_typed_arrays():
    doc = {"id": "r1", "inputs": [tensor(data=[[1, 2, 3], [4, 5, 6]])]}
    for body in (doc, json.dumps(doc).encode()):
        request = parse_request(body, LIMITS)
        x = request.only()
        assert request.id == "r1" and (x.name, x.datatype, x.shape) == ("x", "FP32", (2, 3))
        assert x.data.dtype == np.float32 and x.data.tolist() == [[1, 2, 3], [4, 5, 6]]


def test_binary_extension_as_tritonclient_sends_it():
    window = np.arange(8, dtype=np.float32).reshape(2, 4)
    texts = [b"hello", b"w\xc3\xb6rld"]
    packed = b"".join(struct.pack("<I", len(t)) + t for t in texts)
    header = json.dumps(
        {
            "inputs": [
                tensor("w", (2, 4), parameters={"binary_data_size": window.nbytes}),
                tensor("t", (2,), "BYTES", parameters={"binary_data_size": len(packed)}),
            ]
        }
    ).encode()
    request = parse_request(header + window.tobytes() + packed, LIMITS, str(len(header)))
    assert request.inputs["w"].data.tolist() == window.tolist()
    assert request.inputs["t"].data == texts


BAD = [
    # (document, error, words): each found by reading the code or a live probe (issue 10)
    ({"inputs": [tensor(shape=(2, 2), data=[1, 2, 3])]}, InvalidInput, "3 values do not fill"),
    ({"inputs": [tensor(datatype="FLOAT", data=[1])]}, MalformedRequest, '"datatype" must be one of'),
    ({"inputs": [tensor(shape=(1,), data=["a"])]}, InvalidInput, "must be numbers"),
    ({"inputs": [tensor(shape=(1,), datatype="INT32", data=[1.5])]}, InvalidInput, "must be integers"),
    ({"inputs": [tensor(shape=(1,), datatype="INT8", data=[300])]}, InvalidInput, "out of the range"),
    ({"inputs": [{"name": "x", "shape": "1", "datatype": "FP32", "data": [1]}]}, MalformedRequest, '"shape" must be'),
    ({"inputs": [tensor(shape=(True,), data=[1])]}, MalformedRequest, '"shape" must be'),
    ({"inputs": [{"name": "x", "datatype": "FP32"}]}, MalformedRequest, '"shape" must be'),
    ({"inputs": [tensor()]}, MalformedRequest, "neither"),
    ({"inputs": [tensor(shape=(1000000000, 0), data=[])]}, InvalidInput, "at least 1"),
    ({"inputs": [tensor(shape=(2**32, 2**32), data=[])]}, InvalidInput, "at most 64"),
    ({"inputs": [tensor(shape=(9,), datatype="BYTES", data=["a"] * 9)]}, InvalidInput, "at most 8"),
    ({"inputs": [tensor(name=["x"], data=[1])]}, MalformedRequest, '"name"'),
    ({"inputs": [tensor(shape=(1,), data=[1], parameters=[1])]}, MalformedRequest, '"parameters"'),
    ({"inputs": [tensor(shape=(1,), parameters={"binary_data_size": "abc"})]}, MalformedRequest, "binary_data_size"),
    ({"inputs": [tensor(shape=(1,), data=[1])] * 2}, MalformedRequest, "given twice"),
    ({"inputs": [tensor(shape=(1,), data=[1])] * 3}, InvalidInput, "1 to 2 input"),
    ({"id": 5, "inputs": [tensor(shape=(1,), data=[1])]}, MalformedRequest, '"id"'),
    (
        {"inputs": [tensor(shape=(1,), data=[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]])]},
        InvalidInput,
        "nested",
    ),
    ({"inputs": [tensor(shape=(1,), datatype="BYTES", data=[1])]}, InvalidInput, "must be strings"),
    ({"inputs": [tensor(data=[1] * 10**6)]}, InvalidInput, "more than 6 values"),
]


@pytest.mark.parametrize(("doc", "error", "words"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_v2_requests_say_what_is_wrong(doc, error, words):
    with pytest.raises(error, match=words) as err:
        parse_request(doc, LIMITS)
    assert len(err.value.message) < 300


@pytest.mark.parametrize(
    ("body", "length", "words"),
    [
        (b'{"inputs": [' * 100000, None, "not valid JSON"),
        (b'{"id": ' + b"9" * 5000 + b', "inputs": []}', None, "not valid JSON"),
        (b'{"inputs": []}', "12abc", "byte count"),
        (b'{"inputs": []}', "1_0", "byte count"),
        (b'{"inputs": []}', "99", "byte count"),
        (b'{"inputs": []}', "9" * 5000, "byte count"),
    ],
)
def test_unreadable_v2_bodies_are_400(body, length, words):
    with pytest.raises(MalformedRequest, match=words):
        parse_request(body, LIMITS, length)


def test_binary_sizes_must_match_the_datatype():
    header = json.dumps({"inputs": [tensor(shape=(2,), parameters={"binary_data_size": 7})]}).encode()
    with pytest.raises(InvalidInput, match="7 bytes of binary data; its shape and FP32 need 8"):
        parse_request(header + b"\0" * 7, LIMITS, str(len(header)))
    header = json.dumps({"inputs": [tensor(shape=(1,), parameters={"binary_data_size": 4})]}).encode()
    with pytest.raises(MalformedRequest, match="follow the last input"):
        parse_request(header + b"\0" * 8, LIMITS, str(len(header)))


def test_response_uses_the_declared_names_and_datatypes():
    fields = {"label": "INT64", "probability": "FP32", "note": "BYTES"}
    items = [{"label": [3, 5], "probability": [0.9, 0.1]}, {"label": [3, 5], "probability": [0.8, 0.2], "note": "x"}]
    out = response("digits", "1.0", "r1", fields, items)
    assert out["id"] == "r1" and out["model_name"] == "digits"
    assert out["outputs"] == [
        {"name": "label", "shape": [2, 2], "datatype": "INT64", "data": [3, 5, 3, 5]},
        {"name": "probability", "shape": [2, 2], "datatype": "FP32", "data": [0.9, 0.1, 0.8, 0.2]},
        {"name": "note", "shape": [2], "datatype": "BYTES", "data": ["null", '"x"']},
    ]


def test_answers_that_are_not_rectangular_become_json_bytes():
    items = [{"segments": [[0, 1], [2, 3]]}, {"segments": [[4, 5]]}, {"segments": {"a": 1}}]
    (out,) = response("m", "1", None, {"segments": "INT64"}, items)["outputs"]
    assert out["datatype"] == "BYTES" and out["shape"] == [3]
    assert [json.loads(v) for v in out["data"]] == [item["segments"] for item in items]
