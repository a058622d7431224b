"""Helpers of reliability runs on a throwaway server (``client.server.Server.throwaway``)."""

from __future__ import annotations

import psutil

from client.api import TorchServeClient
from client.server import Server


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
