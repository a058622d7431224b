"""Tokens, versions, default version, scaling and removal through the management API."""

from __future__ import annotations

import pytest
import requests

from client.api import TorchServeError
from export.archive import build_archive
from tests.support import samples


def test_requests_without_a_valid_token_are_rejected(server, client, registered):
    png = samples("digits")[3].raw
    url = f"{server.address('inference')}/predictions/digits"
    for headers in ({}, {"Authorization": "Bearer not-the-key"}):
        response = requests.post(url, data=png, headers=headers | {"Content-Type": "image/png"}, timeout=10)
        assert response.status_code == 400 and response.json()["type"] == "InvalidKeyException"
    # the inference key does not open the management API
    response = requests.get(
        f"{server.address('management')}/models",
        headers={"Authorization": f"Bearer {client.token('inference')}"},
        timeout=10,
    )
    assert response.status_code == 400 and response.json()["type"] == "InvalidKeyException"


def test_second_version_default_scale_and_unregister(server, client, registered, model_store, build_dir):
    build_archive("digits", version="2.0", store=model_store, build=build_dir)
    client.register("digits-2.0.mar", initial_workers=1)
    try:
        versions = {d["modelVersion"]: d for d in client.describe("digits")}
        assert set(versions) == {"1.0", "2.0"}
        png = samples("digits")[8].raw

        client.set_default("digits", "2.0")
        assert client.describe("digits", version=None)[0]["modelVersion"] == "2.0"
        assert {m["modelName"]: m["modelUrl"] for m in client.list_models()}["digits"] == "digits-2.0.mar"
        assert client.predict("digits", png, "image/png")[0]["label"] == 8
        assert client.predict("digits", png, "image/png", version="1.0")[0]["label"] == 8

        client.scale("digits", 2, version="2.0")
        server.wait_workers_ready(60)  # a scaled worker can report UNLOADING/STARTING for a moment
        workers = client.describe("digits", "2.0")[0]["workers"]
        assert len(workers) == 2 and all(w["status"] == "READY" for w in workers)
        assert client.predict("digits", png, "image/png", version="2.0")[0]["label"] == 8
    finally:
        client.set_default("digits", "1.0")
        client.unregister("digits", "2.0")
    assert [d["modelVersion"] for d in client.describe("digits")] == ["1.0"]
    with pytest.raises(TorchServeError) as err:
        client.predict("digits", png, "image/png", version="2.0")
    assert err.value.status == 404


def test_a_removed_model_answers_404(client, registered):
    sample = samples("sensor_anomaly")[0]
    client.unregister("sensor_anomaly")
    try:
        with pytest.raises(TorchServeError) as err:
            client.predict("sensor_anomaly", sample.raw, sample.content_type)
        assert err.value.status == 404 and err.value.type == "ModelNotFoundException"
        assert "sensor_anomaly" not in {m["modelName"] for m in client.list_models()}
    finally:
        client.register("sensor_anomaly.mar")
    assert client.predict("sensor_anomaly", sample.raw, sample.content_type)["threshold"] > 0


def test_registration_from_outside_the_model_store_is_refused(client, registered, model_store):
    for url in ("https://example.com/digits.mar", f"file://{model_store}/digits.mar", "../digits.mar"):
        with pytest.raises(TorchServeError) as err:
            client.register(url)
        assert err.value.status == 404, url
        assert "allowed URL" in err.value.message or "Relative path" in err.value.message, err.value.message
