"""The Open Inference Protocol (v2) through a real TorchServe, spoken by Triton's own HTTP client:
the same predictions as the plain REST form, and the same 4xx for bad input."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from handlers.oip import response
from tests.conftest import MODELS
from tests.support import samples

V2_INPUT = {"digits": "image", "sensor_anomaly": "window", "text_embedder": "text"}


@pytest.fixture(scope="module")
def v2(server, registered):
    """Triton's HTTP client pointed at the server's inference address."""
    return triton.InferenceServerClient(server.address("inference").removeprefix("http://"), network_timeout=120)


def auth(client) -> dict:
    return {"Authorization": f"Bearer {client.token('inference')}"}


def v2_input(name: str, sample, binary: bool) -> tuple[triton.InferInput, bool]:
    """The sample as one v2 input tensor; also whether the REST answer was a single instance."""
    if sample.content_type.startswith("image/"):
        data, single = np.array([sample.raw if binary else base64.b64encode(sample.raw)], dtype=object), True
    elif sample.content_type.startswith("text/"):
        data, single = np.array([sample.raw], dtype=object), True
    else:
        doc = json.loads(sample.raw)
        key, value = next((k, v) for k, v in doc.items() if k != "topk")
        single = not key.endswith("s")
        values = [value] if single else value
        data = np.array(values, dtype=object if name == "text_embedder" else np.float32)
    tensor = triton.InferInput(V2_INPUT[name], list(data.shape), "BYTES" if data.dtype == object else "FP32")
    tensor.set_data_from_numpy(data, binary_data=binary)
    return tensor, single


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
@pytest.mark.parametrize("name", MODELS)
def test_v2_answers_match_rest(v2, client, name, binary):
    for sample in samples(name):
        rest = client.predict(name, sample.raw, sample.content_type)
        tensor, single = v2_input(name, sample, binary)
        result = v2.infer(name, [tensor], headers=auth(client), request_id="r-1")
        got = result.get_response()
        assert got["model_name"] == name and got["id"] == "r-1"
        expected = response(name, "1.0", None, [rest] if single else rest)["outputs"]
        assert [o["name"] for o in got["outputs"]] == [o["name"] for o in expected], sample.path.name
        for want in expected:
            array = result.as_numpy(want["name"])
            assert list(array.shape) == want["shape"], (sample.path.name, want["name"])
            if want["datatype"] in ("FP32", "INT64"):
                np.testing.assert_allclose(array.reshape(-1), want["data"], atol=1e-5, err_msg=sample.path.name)
            else:
                assert array.reshape(-1).tolist() == want["data"], (sample.path.name, want["name"])


def test_v2_bad_input_gets_the_same_4xx(v2, client):
    tensor = triton.InferInput("image", [1, 2, 2], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 2, 2), np.float32), binary_data=False)
    with pytest.raises(InferenceServerException) as err:
        v2.infer("digits", [tensor], headers=auth(client))
    assert err.value.status() == "422"
    assert "must be a list of an 8x8 nested list" in err.value.message()
    png = samples("digits")[0]
    assert client.predict("digits", png.raw, png.content_type)[0]["label"] == 0


def test_v2_needs_the_token(v2):
    tensor = triton.InferInput("image", [1, 8, 8], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 8, 8), np.float32), binary_data=False)
    with pytest.raises(InferenceServerException) as err:
        v2.infer("digits", [tensor])
    assert err.value.status() == "400"
