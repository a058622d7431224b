"""A real TorchServe for the integration tests: free ports, its own TMPDIR and logs, a startup
timeout, always stopped. Fixtures chain: model store -> running server -> registered models."""

from __future__ import annotations

import re
import socket
from contextlib import ExitStack
from pathlib import Path

import pytest

from client.api import TorchServeClient, TorchServeError
from client.server import Server
from export.paths import CONFIG
from tests.conftest import MODELS

STARTUP_TIMEOUT = 180  # s; two cores, a JVM and one Python worker per model


def free_ports(count: int) -> list[int]:
    """Ports the kernel says are free right now (held open together so they differ)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def server_config(target: Path, model_store: Path) -> Path:
    """The project's config.properties with this server's own ports and model store."""
    inference, management, metrics, grpc_inference, grpc_management, worker = free_ports(6)
    text = CONFIG.read_text()
    for key, port in (("inference", inference), ("management", management), ("metrics", metrics)):
        text = re.sub(rf"^{key}_address=.*$", f"{key}_address=http://127.0.0.1:{port}", text, flags=re.M)
    text = re.sub(r"^grpc_inference_port=.*$", f"grpc_inference_port={grpc_inference}", text, flags=re.M)
    text = re.sub(r"^grpc_management_port=.*$", f"grpc_management_port={grpc_management}", text, flags=re.M)
    text = re.sub(r"^model_store=.*$", f"model_store={model_store}", text, flags=re.M)
    target.write_text(text + f"\ninitial_worker_port={worker}\n")
    return target


@pytest.fixture(scope="session")
def server(model_store, tmp_path_factory):
    """A running TorchServe on the session's model store; stopped whatever happens."""
    work = tmp_path_factory.mktemp("torchserve")
    srv = Server(server_config(work / "config.properties", model_store), model_store, work, work / "state")
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
