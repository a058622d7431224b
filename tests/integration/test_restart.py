"""The server restarts: what was set through the management API (models, a second version, the default
version, worker counts) comes back from the config snapshot, with no re-registration by hand."""

from __future__ import annotations

import shutil
import time

import pytest

from client.api import TorchServeClient
from client.server import Server, private_config
from export.archive import build_archive
from reliability.record import record
from tests.conftest import MODELS
from tests.integration.conftest import STARTUP_TIMEOUT
from tests.integration.reliability_support import InProcess
from tests.support import assert_same_answer, samples


@pytest.fixture(scope="module")
def reference(unpacked):
    return InProcess(unpacked)


@pytest.fixture(scope="module")
def snapshot_server(model_store, build_dir, tmp_path_factory):
    """A server with config snapshots on (the session server runs with --ncs), on its own store
    holding every archive plus a version 2.0 of the first model."""
    store = tmp_path_factory.mktemp("restart_store")
    for name in MODELS:
        shutil.copy2(model_store / f"{name}.mar", store)
    build_archive(MODELS[0], version="2.0", store=store, build=build_dir)
    work = tmp_path_factory.mktemp("restart_server")
    server = Server(private_config(work / "config.properties", store), store, work, work / "state")
    try:
        server.start(timeout=STARTUP_TIMEOUT, snapshots=True)
        yield server
    finally:
        server.stop()


def state(ts: TorchServeClient) -> dict:
    """Per model: its default version, and per version the worker settings and READY workers."""
    result = {}
    for model in sorted(m["modelName"] for m in ts.list_models()):
        versions = {
            d["modelVersion"]: (d["minWorkers"], d["maxWorkers"], sum(w["status"] == "READY" for w in d["workers"]))
            for d in ts.describe(model)
        }
        result[model] = {"default": ts.describe(model, version=None)[0]["modelVersion"], "versions": versions}
    return result


def test_models_versions_defaults_and_workers_come_back(snapshot_server, reference):
    first, second = MODELS[0], MODELS[1]
    ts = snapshot_server.client()
    for name in MODELS:
        ts.register(f"{name}.mar", initial_workers=1)
    ts.register(f"{first}-2.0.mar", initial_workers=1)
    ts.set_default(first, "2.0")
    ts.scale(second, 2)
    before, old_pid = state(ts), snapshot_server.pid
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
    ts = snapshot_server.client()
    for name in MODELS:
        sample = samples(name)[0]
        assert_same_answer(ts.predict(name, sample.raw, sample.content_type), reference.answer(name, sample))
    sample = samples(first)[0]
    assert_same_answer(ts.predict(first, sample.raw, sample.content_type, "1.0"), reference.answer(first, sample))
