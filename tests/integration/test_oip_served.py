"""The Open Inference Protocol (v2) through a real TorchServe, spoken by Triton's own HTTP client:
the same predictions as the plain REST form under the output names the handler declares, and the
same 4xx for bad input. Inputs are named by each handler's ``v2_inputs``: no list of models here."""

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
    """The handler's declared v2 input names and output fields (name -> datatype)."""
    handler = load_spec(model).handler_class()
    inputs = handler.v2_inputs or tuple(s.name for s in load_spec(model).inputs)  # default: the model's inputs
    return inputs, handler.v2_outputs


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
    _, outputs = v2_names(model)
    outputs = outputs or {o["name"]: V2_TYPES[o["dtype"]] for o in load_spec(model).outputs}  # the generic handler's
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
            if datatype == "BYTES":
                assert [json.loads(v) for v in array.reshape(-1)] == want, (sample.path.name, out)
            else:
                assert array.shape[0] == len(items), (sample.path.name, out)
                tol = tolerance(model)
                np.testing.assert_allclose(array.astype(np.float64), np.asarray(want, np.float64), **tol)


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
