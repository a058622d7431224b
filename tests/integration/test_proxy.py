"""Issue 22 finding 4: deploy/proxy's nginx in front of a throwaway TorchServe. Good requests pass over
TLS with the same answers; slow headers and stalled bodies are cut; open requests per client are capped;
bodies over max_request_size and the management API never reach TorchServe."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import time
from urllib.parse import urlsplit

import pytest
import requests

from client.api import read_properties
from client.config import free_ports
from deploy.proxy.__main__ import make_cert, render
from reliability.record import record
from tests.conftest import MODELS
from tests.support import samples

MODEL = MODELS[0]
TIMEOUT_S, CONNECTIONS = 2, 4  # short, so the test is quick; production defaults are 10 s and 16
HANG_GUARD_S = 30  # a socket wait that would mean "never cut"


@pytest.fixture(scope="module")
def proxy(server, tmp_path_factory):
    if not shutil.which("nginx"):
        pytest.fail("nginx is not installed: `make proxy-tools` (make test installs it)")
    folder = tmp_path_factory.mktemp("proxy")
    make_cert(folder)
    port = free_ports(1)[0]
    upstream = urlsplit(server.address("inference")).netloc
    conf = render(
        folder,
        upstream,
        f"127.0.0.1:{port}",
        header_timeout=TIMEOUT_S,
        body_timeout=TIMEOUT_S,
        connections=CONNECTIONS,
        rate=1000,
        burst=1000,
        config=server.config,
    )
    nginx = subprocess.Popen(["nginx", "-p", str(folder), "-c", str(conf), "-g", "daemon off;"])
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        yield {"url": f"https://127.0.0.1:{port}", "port": port, "cert": str(folder / "cert.pem")}
    finally:
        nginx.terminate()
        nginx.wait(30)


def tls_socket(proxy) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=proxy["cert"])
    raw = socket.create_connection(("127.0.0.1", proxy["port"]), timeout=HANG_GUARD_S)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def cut_after(sock: ssl.SSLSocket) -> tuple[float, bytes]:
    """Seconds until the proxy answers or closes a stalled request, and what it sent."""
    start = time.monotonic()
    try:
        answer = sock.recv(4096)
    except (ConnectionResetError, ssl.SSLError):
        answer = b""
    return time.monotonic() - start, answer


def test_good_requests_pass_over_tls(server, client, registered, proxy):
    sample = samples(MODEL)[0]
    headers = client.auth_headers("inference") | {"Content-Type": sample.content_type}
    url = f"{proxy['url']}/predictions/{MODEL}"
    through = requests.post(url, data=sample.raw, headers=headers, verify=proxy["cert"], timeout=60)
    assert through.status_code == 200, through.text
    assert through.json() == client.predict(MODEL, sample.raw, sample.content_type)
    management = requests.get(f"{proxy['url']}/models", headers=headers, verify=proxy["cert"], timeout=60)
    assert management.status_code == 404  # never proxied
    too_big = int(read_properties(server.config)["max_request_size"]) + 1
    big = requests.post(url, data=b"\0" * too_big, headers=headers, verify=proxy["cert"], timeout=60)
    assert big.status_code == 413
    record(
        "security",
        check="proxy: good, /models, body over max",
        expected="200, 404, 413",
        seen=f"{through.status_code}, {management.status_code}, {big.status_code}",
    )


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(b"POST /predictions/x HTTP/1.1\r\nHost: a\r\n", id="slow headers"),
        pytest.param(
            b"POST /predictions/x HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n" + b"x" * 10, id="stalled body"
        ),
    ],
)
def test_slow_clients_are_cut(proxy, sent):
    with tls_socket(proxy) as sock:
        sock.sendall(sent)
        seconds, answer = cut_after(sock)
    print(f"cut after {seconds:.1f} s: {answer[:12]!r}")
    record(
        "security", check="proxy: stalled request", expected="closed or 408", seen=f"{seconds:.1f} s {answer[:12]!r}"
    )
    assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer  # closed, not timed out by us


def test_open_requests_per_client_are_capped_and_good_ones_pass_after(client, registered, proxy):
    stalled = []
    try:
        for _ in range(CONNECTIONS):
            sock = tls_socket(proxy)
            sock.sendall(f"POST /predictions/{MODEL} HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nx".encode())
            stalled.append(sock)
        time.sleep(0.5)
        with tls_socket(proxy) as extra:
            extra.sendall(b"GET /ping HTTP/1.1\r\nHost: a\r\n\r\n")
            _, answer = cut_after(extra)
    finally:
        for sock in stalled:
            sock.close()
    assert answer.startswith(b"HTTP/1.1 429"), answer[:100]
    time.sleep(0.5)
    sample = samples(MODEL)[0]
    headers = client.auth_headers("inference") | {"Content-Type": sample.content_type}
    after = requests.post(
        f"{proxy['url']}/predictions/{MODEL}", data=sample.raw, headers=headers, verify=proxy["cert"], timeout=60
    )
    record(
        "security",
        check=f"proxy: request {CONNECTIONS + 1} while {CONNECTIONS} stall",
        expected="429",
        seen=answer[:12].decode(errors="replace"),
    )
    assert after.status_code == 200
