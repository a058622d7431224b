"""Issue 22 finding 13 (the kit's part; the bench's wrk key and sessions are bench/'s): no client
session of the kit honours HTTP(S)_PROXY, and torchserve.out is rotated instead of growing forever."""

from __future__ import annotations

import re

from client.api import TorchServeClient
from client.server import rotate
from export.paths import ROOT

CODE = ("client", "export", "deploy", "handlers", "reliability", "models")


def test_every_session_of_the_kit_ignores_proxy_variables(monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    assert TorchServeClient(key_file=None).session.trust_env is False
    for folder in CODE:
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            assert not re.search(r"requests\.(get|post|put|delete|head|request)\(", text), path
            for _ in re.finditer(r"(\w+(?:\.\w+)?) = requests\.Session\(\)", text):
                assert ".trust_env = False" in text, f"{path}: a session that honours HTTP(S)_PROXY"


def test_torchserve_out_is_rotated_before_a_start(tmp_path):
    out = tmp_path / "torchserve.out"
    out.write_bytes(b"x" * 101)
    (tmp_path / "torchserve.out.1").write_bytes(b"older")
    rotate(out, limit=100, keep=3)
    assert not out.exists() and (tmp_path / "torchserve.out.1").read_bytes() == b"x" * 101
    assert (tmp_path / "torchserve.out.2").read_bytes() == b"older"
    out.write_bytes(b"small")
    rotate(out, limit=100)
    assert out.read_bytes() == b"small"  # under the limit: left alone
