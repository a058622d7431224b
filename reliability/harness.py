"""Throwaway servers for reliability runs: free ports, a temporary folder, always stopped."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

from client.api import TorchServeClient
from client.server import Server, private_config

STARTUP_TIMEOUT = 180  # s; two busy cores, a JVM and one Python worker per model


@contextmanager
def throwaway_server(model_store: Path, snapshots: bool = False) -> Iterator[Server]:
    """A TorchServe on the project's settings with its own ports and state, stopped whatever happens."""
    with tempfile.TemporaryDirectory(prefix="ts-reliability-") as tmp:
        work = Path(tmp)
        server = Server(private_config(work / "config.properties", model_store), model_store, work, work / "state")
        try:
            server.start(timeout=STARTUP_TIMEOUT, snapshots=snapshots)
            yield server
        finally:
            server.stop()


def register_all(client: TorchServeClient, models: list[str], workers: int = 1) -> None:
    """Register ``<model>.mar`` from the server's model store for every model."""
    for name in models:
        client.register(f"{name}.mar", initial_workers=workers)


def rss_mb(server: Server) -> dict:
    """Resident memory (MB) of the frontend and of all workers together, and the worker count."""
    procs = server.processes()
    if not procs:
        return {"frontend": 0.0, "workers": 0.0, "worker_count": 0}
    frontend, workers = procs[0], procs[1:]
    mb = 1024 * 1024
    return {
        "frontend": round(frontend.memory_info().rss / mb, 1),
        "workers": round(sum(_rss(p) for p in workers) / mb, 1),
        "worker_count": len(workers),
    }


def _rss(proc: psutil.Process) -> int:
    try:
        return proc.memory_info().rss
    except psutil.NoSuchProcess:  # a worker that exited between listing and reading
        return 0
