"""Versions, the default version, scaling and removal through the management API. (Tokens and where
archives may come from: test_security.py.)"""

from __future__ import annotations

import pytest

from client.api import TorchServeError
from export.archive import build_archive
from tests.conftest import MODELS
from tests.support import assert_matches, checked_samples, tolerance

MODEL, OTHER = MODELS[0], MODELS[-1]


def test_second_version_default_scale_and_unregister(server, client, registered, model_store, build_dir):
    build_archive(MODEL, version="2.0", store=model_store, build=build_dir)
    client.register(f"{MODEL}-2.0.mar", initial_workers=1)
    sample, pattern = checked_samples(MODEL)[0]
    tol = tolerance(MODEL)
    try:
        versions = {d["modelVersion"]: d for d in client.describe(MODEL)}
        assert set(versions) == {"1.0", "2.0"}

        client.set_default(MODEL, "2.0")
        assert client.describe(MODEL, version=None)[0]["modelVersion"] == "2.0"
        assert {m["modelName"]: m["modelUrl"] for m in client.list_models()}[MODEL] == f"{MODEL}-2.0.mar"
        assert_matches(client.predict(MODEL, sample.raw, sample.content_type), pattern, tol)
        assert_matches(client.predict(MODEL, sample.raw, sample.content_type, version="1.0"), pattern, tol)

        client.scale(MODEL, 2, version="2.0")
        server.wait_workers_ready(60)  # a scaled worker can report UNLOADING/STARTING for a moment
        workers = client.describe(MODEL, "2.0")[0]["workers"]
        assert len(workers) == 2 and all(w["status"] == "READY" for w in workers)
        assert_matches(client.predict(MODEL, sample.raw, sample.content_type, version="2.0"), pattern, tol)
    finally:
        client.set_default(MODEL, "1.0")
        client.unregister(MODEL, "2.0")
    assert [d["modelVersion"] for d in client.describe(MODEL)] == ["1.0"]
    with pytest.raises(TorchServeError) as err:
        client.predict(MODEL, sample.raw, sample.content_type, version="2.0")
    assert err.value.status == 404


def test_a_removed_model_answers_404(client, registered):
    sample, pattern = checked_samples(OTHER)[0]
    client.unregister(OTHER)
    try:
        with pytest.raises(TorchServeError) as err:
            client.predict(OTHER, sample.raw, sample.content_type)
        assert err.value.status == 404 and err.value.type == "ModelNotFoundException"
        assert OTHER not in {m["modelName"] for m in client.list_models()}
    finally:
        client.register(f"{OTHER}.mar")
    assert_matches(client.predict(OTHER, sample.raw, sample.content_type), pattern, tolerance(OTHER))
