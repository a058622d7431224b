"""The Open Inference Protocol (v2) through a real TorchServe, spoken by Triton's own HTTP client:
the same predictions as the plain REST form under the fields the handler declares, by the rules the
README states ("Adding your own model", the handler contract), and the same 4xx for bad input. Inputs
are named by each handler's ``v2_inputs``: no list of models here."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from export.spec import load_spec
from tests.conftest import MODELS
from tests.support import samples, tolerance


@pytest.fixture(scope="module")
def v2(server, registered):
    """Triton's HTTP client pointed at the server's inference address."""
    return triton.InferenceServerClient(server.address("inference").removeprefix("http://"), network_timeout=120)


def auth(client) -> dict:
    return {"Authorization": f"Bearer {client.token('inference')}"}


def v2_names(model: str) -> tuple[tuple[str, ...], dict[str, str]]:
    """The handler's declared v2 input names and answer fields (name -> datatype), as configured
    from the spec (codec models declare theirs from the spec's codecs)."""
    spec = load_spec(model)
    handler = spec.handler_class()()
    handler.configure(spec.serving(), spec.folder, {})
    return handler.v2_inputs, handler.output_fields()


V2_TYPES = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "int32": "INT32", "bool": "BOOL"}


def v2_inputs(model: str, sample, binary: bool) -> tuple[list[triton.InferInput], bool]:
    """The sample as v2 input tensors; also whether its REST answer is one instance's."""
    doc = json.loads(sample.raw) if sample.content_type == "application/json" else None
    if isinstance(doc, dict) and isinstance(doc.get("inputs"), dict):  # named tensors, one per model input
        specs = load_spec(model).inputs
        single = len(np.shape(doc["inputs"][specs[0].name])) == len(specs[0].shape) - 1
        arrays = {s.name: np.asarray(doc["inputs"][s.name], s.dtype) for s in specs}
        arrays = {k: a[None] if single else a for k, a in arrays.items()}  # v2 always has the batch dimension
        types = {s.name: V2_TYPES[s.dtype] for s in specs}
    else:
        (name, *_), _ = v2_names(model)
        if doc is None:  # a file body: one BYTES element
            raw = sample.raw if binary or sample.content_type.startswith("text/") else base64.b64encode(sample.raw)
            data, single = np.array([raw], dtype=object), True
        else:  # the JSON body's one value: a batch when its key is plural ("images", "texts")
            key, value = next((k, v) for k, v in doc.items() if isinstance(v, (list, str)))
            single = not key.endswith("s")
            values = [value] if single else value
            text = isinstance(values[0], str)
            data = np.array([v.encode() for v in values] if text else values, dtype=object if text else np.float32)
        arrays, types = {name: data}, {name: "BYTES" if data.dtype == object else "FP32"}
    tensors = []
    for name, data in arrays.items():
        tensor = triton.InferInput(name, list(data.shape), types[name])
        tensor.set_data_from_numpy(data, binary_data=binary)
        tensors.append(tensor)
    return tensors, single


def strings(value) -> bool:
    """Every leaf a string (the README: such a field is BYTES of UTF-8 strings, its own shape)."""
    return all(strings(v) for v in value) if isinstance(value, list) else isinstance(value, str)


def numbers(values: list) -> bool:
    """A rectangular tensor of numbers (the README: such a field has its declared datatype)."""
    try:
        return None not in values and np.asarray(values).dtype.kind in "biuf"
    except ValueError:  # ragged
        return False


def field(item, name: str):
    """Field ``name`` of one REST answer item (written here, independently of the handlers): a dict's
    value (a dict's values in order), or the list of that field over a list of records."""
    if isinstance(item, list):
        return [record[name] for record in item]
    value = item.get(name)
    return list(value.values()) if isinstance(value, dict) else value


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("model", MODELS)
def test_v2_answers_match_rest(v2, client, model, binary):
    """README: one v2 output per declared field, in order, holding the REST answer's field values
    (an absent field: null); strings as UTF-8 BYTES of their own shape; numbers as the declared
    datatype; anything else (null, objects, ragged lists) as BYTES [n] of JSON texts."""
    _, outputs = v2_names(model)
    for sample in samples(model):
        rest = client.predict(model, sample.raw, sample.content_type)
        tensors, single = v2_inputs(model, sample, binary)
        items = [rest] if single else rest
        result = v2.infer(model, tensors, headers=auth(client), request_id="r-1")
        got = result.get_response()
        assert got["model_name"] == model and got["id"] == "r-1"
        assert [o["name"] for o in got["outputs"]] == list(outputs), sample.path.name
        for out, datatype in outputs.items():
            array, want = result.as_numpy(out), [field(item, out) for item in items]
            sent = result.get_output(out)["datatype"]
            where = (sample.path.name, out)
            if strings(want):
                assert sent == "BYTES" and list(array.shape) == list(np.shape(want)), where
                texts = [v.decode() if isinstance(v, bytes) else v for v in array.reshape(-1)]
                assert texts == np.asarray(want).reshape(-1).tolist(), where
            elif numbers(want):
                assert sent == datatype and array.shape[0] == len(items), where
                tol = tolerance(model)
                np.testing.assert_allclose(array.astype(np.float64), np.asarray(want, np.float64), **tol)
            else:
                assert sent == "BYTES" and list(array.shape) == [len(items)], where
                assert [json.loads(v) for v in array.reshape(-1)] == want, where


def test_v2_bad_input_gets_the_same_4xx(v2, client):
    for model in MODELS:
        (name, *_), _ = v2_names(model)
        tensor = triton.InferInput(name, [1, 0], "FP32")  # a zero-size dimension: nothing to infer
        tensor.set_data_from_numpy(np.zeros((1, 0), np.float32), binary_data=False)
        with pytest.raises(InferenceServerException) as err:
            v2.infer(model, [tensor], headers=auth(client))
        assert err.value.status() == "422", (model, err.value.message())
        assert "at least 1" in err.value.message() and len(err.value.message()) < 200
        good = samples(model)[0]
        assert client.predict(model, good.raw, good.content_type) is not None


def test_v2_needs_the_token(v2):
    (name, *_), _ = v2_names(MODELS[0])
    tensor = triton.InferInput(name, [1], "FP32")
    tensor.set_data_from_numpy(np.zeros(1, np.float32), binary_data=False)
    with pytest.raises(InferenceServerException) as err:
        v2.infer(MODELS[0], [tensor])
    assert err.value.status() == "400"
