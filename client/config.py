"""The config.properties of a server that runs beside others (tests, bench, `make soak`): the project's
settings with free ports, its own model store and any overrides."""

from __future__ import annotations

import re
import socket
from contextlib import ExitStack
from pathlib import Path

from export.paths import CONFIG  # every project path is derived once, there


def free_ports(count: int) -> list[int]:
    """Ports the kernel says are free right now (held open together so they differ)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def private_config(target: Path, model_store: Path, base: Path = CONFIG, **settings: str) -> Path:
    """Write ``base`` to ``target`` with free ports, ``model_store`` and ``settings`` (a key's line is
    replaced, or appended): a server that runs beside others without touching the project's ports."""
    inference, management, metrics, grpc_inference, grpc_management, worker = free_ports(6)
    lines = {
        "inference_address": f"http://127.0.0.1:{inference}",
        "management_address": f"http://127.0.0.1:{management}",
        "metrics_address": f"http://127.0.0.1:{metrics}",
        "grpc_inference_port": str(grpc_inference),
        "grpc_management_port": str(grpc_management),
        "initial_worker_port": str(worker),
        "model_store": str(model_store),
    } | {key: str(value) for key, value in settings.items()}
    text = Path(base).read_text()
    for key, value in lines.items():
        line = f"{key}={value}"
        text, found = re.subn(rf"^{re.escape(key)}=.*$", lambda _, line=line: line, text, flags=re.M)
        if not found:
            text = text.rstrip("\n") + f"\n{line}\n"
    Path(target).write_text(text)
    return Path(target)
