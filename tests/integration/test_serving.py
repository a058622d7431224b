"""Predictions through a real TorchServe: the in-process model's answers, the expected answers of
samples/expected.json, multipart uploads, JSON errors for bad input, and the metrics port."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import MODELS
from tests.support import assert_matches, assert_same_answer, checked_samples, samples, tolerance


@pytest.mark.parametrize("name", MODELS)
def test_every_sample_matches_the_in_process_model(client, registered, reference, name):
    for sample in samples(name):
        answer = client.predict(name, sample.raw, sample.content_type)
        assert_same_answer(answer, reference.answer(name, sample), tolerance(name), where=sample.path.name)


@pytest.mark.parametrize("name", MODELS)
def test_every_sample_gets_its_expected_answer(client, registered, name):
    for sample, pattern in checked_samples(name):
        answer = client.predict(name, sample.raw, sample.content_type)
        assert_matches(answer, pattern, tolerance(name), where=sample.path.name)


@pytest.mark.parametrize("name", MODELS)
def test_multipart_upload(server, client, registered, reference, name):
    sample = samples(name)[0]
    response = requests.post(
        f"{server.address('inference')}/predictions/{name}",
        files={"data": (sample.path.name, sample.raw, sample.content_type)},
        headers={"Authorization": f"Bearer {client.token('inference')}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert_same_answer(response.json(), reference.answer(name, sample), tolerance(name))


@pytest.mark.parametrize("name", MODELS)
def test_bad_input_gets_a_json_4xx_and_the_worker_stays_up(server, client, registered, reference, name):
    before = [w["pid"] for w in client.describe(name)[0]["workers"]]
    response = requests.post(
        f"{server.address('inference')}/predictions/{name}",
        data=b'{"no such input": [[1, 2], [3, 4]]}',
        headers={"Authorization": f"Bearer {client.token('inference')}", "Content-Type": "application/json"},
        timeout=30,
    )
    assert 400 <= response.status_code < 500, response.text
    body = response.json()
    assert set(body) == {"code", "type", "message"} and body["code"] == response.status_code, body
    assert body["message"].strip(), body  # says what was wrong (the wording: test_bad_input.py)
    sample = samples(name)[0]
    answer = client.predict(name, sample.raw, sample.content_type)
    assert_same_answer(answer, reference.answer(name, sample), tolerance(name))
    assert [w["pid"] for w in client.describe(name)[0]["workers"]] == before


def test_metrics_port_serves_prometheus_text(server, client, registered):
    name = MODELS[0]
    sample = samples(name)[0]
    client.predict(name, sample.raw, sample.content_type)
    text = requests.get(f"{server.address('metrics')}/metrics", timeout=10).text
    assert "ts_inference_requests_total" in text and f'model_name="{name}"' in text
