"""Predictions through a real TorchServe agree with the in-process model."""

from __future__ import annotations

import pytest
import requests

from export.spec import load_spec
from tests.conftest import MODELS
from tests.support import (
    assert_same_answer,
    expected_outputs,
    load_handlers,
    reference_answer,
    samples,
)


@pytest.fixture(scope="module")
def in_process(unpacked):
    """The handlers, in process, to compute what the server must answer."""
    return load_handlers({name: unpacked[name] for name in MODELS})


@pytest.mark.parametrize("name", MODELS)
def test_every_sample_matches_the_in_process_model(client, registered, in_process, name):
    for sample in samples(name):
        answer = client.predict(name, sample.raw, sample.content_type)
        assert_same_answer(answer, reference_answer(name, in_process[name], sample), where=sample.path.name)


def test_digit_pngs_come_back_with_their_true_labels(client, registered):
    expected = expected_outputs("digits")
    for sample in samples("digits"):
        answer = client.predict("digits", sample.raw, sample.content_type)
        assert answer[0]["label"] == expected[sample.path.name], sample.path.name


def test_sensor_samples_get_the_expected_verdict(client, registered):
    expected = expected_outputs("sensor_anomaly")
    for sample in samples("sensor_anomaly"):
        answer = client.predict("sensor_anomaly", sample.raw, sample.content_type)
        assert answer["anomaly"] is expected[sample.path.name], (sample.path.name, answer)


def test_multipart_upload(server, client, registered):
    png = (load_spec("digits").folder / "samples" / "6.png").read_bytes()
    response = requests.post(
        f"{server.address('inference')}/predictions/digits",
        files={"data": ("6.png", png, "image/png")},
        headers={"Authorization": f"Bearer {client.token('inference')}"},
        timeout=30,
    )
    assert response.status_code == 200 and response.json()[0]["label"] == 6


def test_bad_input_gets_a_json_4xx_and_the_worker_stays_up(server, client, registered):
    before = [w["pid"] for w in client.describe("digits")[0]["workers"]]
    response = requests.post(
        f"{server.address('inference')}/predictions/digits",
        data=b'{"image": [[1, 2], [3, 4]]}',
        headers={"Authorization": f"Bearer {client.token('inference')}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 422
    assert response.json() == {
        "code": 422,
        "type": "InvalidInput",
        "message": '"image" must be an 8x8 nested list of pixel values 0-255 (white ink on black); got shape [2, 2]',
    }
    sample = samples("digits")[0]
    assert client.predict("digits", sample.raw, sample.content_type)[0]["label"] == 0
    assert [w["pid"] for w in client.describe("digits")[0]["workers"]] == before


def test_metrics_port_serves_prometheus_text(server, client, registered):
    client.predict("digits", samples("digits")[0].raw, "image/png")
    text = requests.get(f"{server.address('metrics')}/metrics", timeout=10).text
    assert "ts_inference_requests_total" in text and 'model_name="digits"' in text
