"""The server's settings, checked without a server: every hardening line of config.properties is
there, safe, and explained by a comment; the key file stays out of git and out of the Makefile.
What a running server does with them is tests/integration/test_security.py."""

from __future__ import annotations

import re
import subprocess

import pytest

from client.api import read_properties
from export.paths import CONFIG, ROOT

REMOTE_URLS = ("https://evil/x.mar", "http://x/y.mar", "file:///x.mar", "s3://b/x.mar", "model_store/x.mar")


def loads_nothing_remote(pattern: str) -> bool:
    """allowed_urls (a regex of URLs registration may fetch from) matches none of a few remote ones."""
    return not any(re.fullmatch(pattern, url) for url in REMOTE_URLS)


LOOPBACK_URL = re.compile(r"^https?://127\.0\.0\.1:\d+$")
HARDENING = {  # key -> check of its value, given every setting (some are safe only together)
    "inference_address": lambda v, _: bool(LOOPBACK_URL.match(v)),
    "management_address": lambda v, _: bool(LOOPBACK_URL.match(v)),
    "metrics_address": lambda v, _: bool(LOOPBACK_URL.match(v)),
    "grpc_inference_address": lambda v, _: v == "127.0.0.1",
    "grpc_management_address": lambda v, _: v == "127.0.0.1",
    "disable_token_authorization": lambda v, _: v == "false",
    "token_expiration_min": lambda v, _: 0 < int(v) <= 60,
    # On because `make register` and the tests use it; safe only while allowed_urls loads nothing remote.
    "enable_model_api": lambda v, props: v == "true" and loads_nothing_remote(props.get("allowed_urls", ".*")),
    "allowed_urls": lambda v, _: loads_nothing_remote(v),
    "install_py_dep_per_model": lambda v, _: v == "false",
    "max_request_size": lambda v, _: 0 < int(v) <= 6553500,
    "max_response_size": lambda v, _: 0 < int(v) <= 6553500,
    "job_queue_size": lambda v, _: 0 < int(v) <= 1000,
}


@pytest.mark.parametrize("key", HARDENING)
def test_hardening_line_is_safe_and_explained(key):
    lines = CONFIG.read_text().splitlines()
    props = read_properties(CONFIG)
    assert key in props and HARDENING[key](props[key], props), f"{key}={props.get(key)}"
    at = next(i for i, line in enumerate(lines) if line.startswith(f"{key}="))
    block = []
    while at > 0 and lines[at - 1].strip():  # the lines right above it, up to a blank line
        at -= 1
        block.append(lines[at])
    assert any(line.startswith("#") for line in block), f"{key} has no comment explaining it"


@pytest.mark.skipif(not (ROOT / ".git").exists(), reason="not a git checkout")
def test_the_key_file_is_ignored_by_git():
    ignored = subprocess.run(["git", "check-ignore", "-q", "key_file.json"], cwd=ROOT, check=False)
    assert ignored.returncode == 0, "key_file.json is not ignored by git"


def test_the_makefile_never_prints_the_key_file():
    makefile = (ROOT / "Makefile").read_text()
    reads = re.findall(r"^\t.*\b(?:cat|head|tail|less|more|jq|json\.load)\b.*key_file.*$", makefile, flags=re.M)
    assert not reads, reads
