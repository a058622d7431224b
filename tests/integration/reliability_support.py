"""Helpers of the reliability tests: raw requests (any method, any token), worker PIDs, the server's
logs, registering an archive under another name, in-process reference answers, and hostile PNGs."""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path
from typing import Any

import requests

from client.api import TorchServeClient
from client.server import Server
from export.samples import Sample
from tests.support import direct_answer, load_handlers, run_handler

TIMEOUT = 60  # s per request: generous for two busy cores


def call(
    server: Server,
    client: TorchServeClient,
    path: str,
    body: bytes | None = None,
    content_type: str | None = None,
    method: str = "POST",
    api: str = "inference",
    token: str | None = "default",
    params: dict | None = None,
) -> requests.Response:
    """One raw HTTP request; ``token="default"`` sends the right key for ``api``, None sends none."""
    key = client.token(api) if token == "default" else token
    headers = ({"Authorization": f"Bearer {key}"} if key else {}) | (
        {"Content-Type": content_type} if content_type else {}
    )
    return requests.request(
        method, server.address(api) + path, data=body, headers=headers, params=params, timeout=TIMEOUT
    )


def error_of(response: requests.Response) -> dict:
    """The JSON error body ``{"code", "type", "message"}``; fails the test if it is not one."""
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"code", "type", "message"}, body
    assert body["code"] == response.status_code, body
    return body


def worker_pids(client: TorchServeClient, model: str, version: str | None = None) -> list[int]:
    """PIDs of the workers of a model's default version (or of ``version``)."""
    return sorted(w["pid"] for w in client.describe(model, version)[0]["workers"])


def register_as(client: TorchServeClient, archive: str, name: str, **params) -> dict:
    """Register ``archive`` under the model name ``name``, one worker, with extra management parameters
    (``batch_size``, ``max_batch_delay``, ...); raises TorchServeError on an error status."""
    return client.register(archive, initial_workers=1, model_name=name, **params)


def model_log(server: Server) -> str:
    """Everything the workers printed so far (handler logs and tracebacks)."""
    return (server.log_dir / "model_log.log").read_text(errors="replace")


def wait_for_log(server: Server, text: str, timeout: float = 15.0) -> str:
    """model_log.log once it contains ``text`` (or after ``timeout``): the frontend copies worker
    output into it asynchronously, so a line can land after the answer that it explains."""
    deadline = time.monotonic() + timeout
    while text not in (log := model_log(server)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return log


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident memory (VmHWM) in MB, where /proc exists."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        return None
    for line in status.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


class InProcess:
    """The answers the server must give: the model run directly where the test can build its inputs
    (``tests.support.direct_answer``), else the same handler in this process on the same archive (a
    check of serving: TorchServe's batching and transport; the handler itself is checked against
    references made without it in tests/unit/test_handlers.py)."""

    def __init__(self, unpacked: dict[str, Path]):
        self.unpacked = unpacked
        self.handlers: dict[str, Any] = {}
        self.answers: dict[tuple[str, Path], Any] = {}

    def answer(self, model: str, sample: Sample) -> Any:
        key = (model, sample.path)
        if key not in self.answers:
            direct = direct_answer(model, sample)
            self.answers[key] = direct if direct is not None else self.in_process(model, sample)
        return self.answers[key]

    def in_process(self, model: str, sample: Sample) -> Any:
        if model not in self.handlers:
            self.handlers[model] = load_handlers({model: self.unpacked[model]})[model]
        [(status, answer)] = run_handler(
            self.handlers[model], self.unpacked[model], [(sample.raw, sample.content_type)]
        )
        assert status == 200, answer
        return answer


def png(width: int, height: int, idat: bytes) -> bytes:
    """A grayscale 8-bit PNG with the given header size and compressed pixel data, as is."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def bomb_png(side: int) -> bytes:
    """A real decompression bomb: a side x side black image, complete, in a few hundred KB."""
    row = b"\x00" * (side + 1)  # filter byte + pixels
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    return png(side, side, idat)
