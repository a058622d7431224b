"""The bench's load generator sends the inference key without showing it to other users (issue 22,
finding 13): the key reaches wrk through its environment, never its command line (world-readable
in ``ps``), and the bench's HTTP sessions ignore HTTP(S)_PROXY. Needs Debian's wrk, as the bench."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest

from bench import servers
from bench.loadgen import run_load, wrk_binary
from export.samples import Sample

KEY = "k3y-that-must-not-show-in-ps"


def test_the_key_reaches_the_server_but_not_wrks_command_line(tmp_path):
    try:
        wrk_binary()
    except Exception as err:  # noqa: BLE001
        pytest.skip(str(err))
    seen = {"auth": set(), "argv": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            seen["auth"].add(self.headers.get("Authorization"))
            for p in psutil.Process().children(recursive=True):  # wrk, while it runs
                seen["argv"].append(" ".join(p.cmdline()))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    body = tmp_path / "body.json"
    body.write_bytes(b"{}")
    try:
        result = run_load(
            f"http://127.0.0.1:{server.server_port}/", [Sample(body, "application/json", b"{}")], 1, 1, KEY
        )
    finally:
        server.shutdown()
    assert result.requests > 0 and seen["auth"] == {f"Bearer {KEY}"}
    assert any("wrk" in argv for argv in seen["argv"]), seen["argv"]
    assert not any(KEY in argv for argv in seen["argv"]), seen["argv"]


def test_bench_sessions_ignore_proxy_settings(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    assert servers.session().trust_env is False and servers.HTTP.trust_env is False
    assert servers.HTTP.merge_environment_settings("http://127.0.0.1:1/", {}, None, None, None)["proxies"] == {}
