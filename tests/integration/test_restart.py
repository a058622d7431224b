"""The server restarts: what was set through the management API (models, a second version, the default
version, worker counts) comes back from the config snapshot, with no re-registration by hand."""

from __future__ import annotations

import shutil
import time

import pytest

from client.api import TorchServeClient
from client.server import STARTUP_TIMEOUT, Server
from export.archive import build_archive
from reliability.record import record
from tests.conftest import MODELS
from tests.support import assert_same_answer, samples, tolerance


@pytest.fixture(scope="module")
def snapshot_server(model_store, build_dir, tmp_path_factory):
    """A server with config snapshots on (the session server runs with --ncs), on its own store
    holding every archive plus a version 2.0 of the first model."""
    store = tmp_path_factory.mktemp("restart_store")
    for name in MODELS:
        shutil.copy2(model_store / f"{name}.mar", store)
    build_archive(MODELS[0], version="2.0", store=store, build=build_dir)
    with Server.throwaway(store, tmp_path_factory.mktemp("restart_server"), snapshots=True) as server:
        yield server


def state(client: TorchServeClient) -> dict:
    """Per model: its default version, and per version the worker settings and READY workers."""
    result = {}
    for model in sorted(m["modelName"] for m in client.list_models()):
        versions = {
            d["modelVersion"]: (d["minWorkers"], d["maxWorkers"], sum(w["status"] == "READY" for w in d["workers"]))
            for d in client.describe(model)
        }
        result[model] = {"default": client.describe(model, version=None)[0]["modelVersion"], "versions": versions}
    return result


def test_models_versions_defaults_and_workers_come_back(snapshot_server, reference):
    first, second = MODELS[0], MODELS[1 % len(MODELS)]
    client = snapshot_server.client()
    for name in MODELS:
        client.register(f"{name}.mar", initial_workers=1)
    client.register(f"{first}-2.0.mar", initial_workers=1)
    client.set_default(first, "2.0")
    client.scale(second, 2)
    before, old_pid = state(client), snapshot_server.pid
    assert before[first]["default"] == "2.0" and before[second]["versions"]["1.0"] == (2, 2, 2), before

    snapshot_server.stop()
    restored = snapshot_server.latest_snapshot()  # the one written at shutdown
    started = time.monotonic()
    snapshot_server.restart(timeout=STARTUP_TIMEOUT)  # (stop: already done), start from the last snapshot
    seconds = round(time.monotonic() - started, 1)
    after = state(snapshot_server.client())
    record("restart", before=before, after=after, seconds=seconds, snapshot=restored.name)

    assert snapshot_server.pid != old_pid
    assert after == before
    client = snapshot_server.client()
    for name in MODELS:
        sample = samples(name)[0]
        answer = client.predict(name, sample.raw, sample.content_type)
        assert_same_answer(answer, reference.answer(name, sample), tolerance(name))
    sample = samples(first)[0]
    answer = client.predict(first, sample.raw, sample.content_type, "1.0")
    assert_same_answer(answer, reference.answer(first, sample), tolerance(first))
