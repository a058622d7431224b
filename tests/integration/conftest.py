"""A real TorchServe for the integration tests (``Server.throwaway``: free ports, its own TMPDIR and
logs, always stopped), and the answers it must give. Fixtures chain: model store -> running server
-> registered models."""

from __future__ import annotations

import pytest

from client.api import TorchServeClient
from client.server import Server
from tests.conftest import MODELS
from tests.integration.reliability_support import InProcess
from tests.support import unregister_all


@pytest.fixture(scope="session")
def server(model_store, tmp_path_factory):
    """A running TorchServe on the session's model store; stopped whatever happens."""
    with Server.throwaway(model_store, tmp_path_factory.mktemp("torchserve")) as running:
        yield running


@pytest.fixture(scope="session")
def client(server) -> TorchServeClient:
    """A client holding the server's tokens."""
    return server.client()


@pytest.fixture(scope="session")
def registered(client, model_store, artifacts):
    """Every model registered through the management API (and unregistered at the end). A model the
    server refuses is left out and its tests fail with the reason; the others are served."""
    names = [name for name in MODELS if artifacts.failure(name) is None]
    for name in names:
        try:
            client.register(f"{name}.mar", initial_workers=1)
        except Exception as error:  # noqa: BLE001 - kept for that model's tests (conftest._model_failed_earlier)
            artifacts.refused[name] = error
    yield MODELS
    unregister_all(client, MODELS)


@pytest.fixture(scope="session")
def reference(unpacked) -> InProcess:
    """The answers the server must give: each model's handler and eager model, in this process."""
    return InProcess(unpacked)
