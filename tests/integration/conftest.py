"""A real TorchServe for the integration tests: free ports, its own TMPDIR and logs, a startup
timeout, always stopped. Fixtures chain: model store -> running server -> registered models."""

from __future__ import annotations

import pytest

from client.api import TorchServeClient, TorchServeError
from client.server import Server, private_config
from tests.conftest import MODELS

STARTUP_TIMEOUT = 180  # s; two cores, a JVM and one Python worker per model


@pytest.fixture(scope="session")
def server(model_store, tmp_path_factory):
    """A running TorchServe on the session's model store; stopped whatever happens."""
    work = tmp_path_factory.mktemp("torchserve")
    srv = Server(private_config(work / "config.properties", model_store), model_store, work, work / "state")
    try:
        srv.start(timeout=STARTUP_TIMEOUT, snapshots=False)
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="session")
def client(server) -> TorchServeClient:
    """A client holding the server's tokens."""
    return server.client()


@pytest.fixture(scope="session")
def registered(client):
    """Every model registered through the management API (and unregistered at the end)."""
    for name in MODELS:
        client.register(f"{name}.mar", initial_workers=1)
    yield MODELS
    for name in MODELS:
        try:
            client.unregister(name)
        except TorchServeError:
            pass  # a test already removed it
