"""Version names, archive copies, the register path's archive-name rule and the client's retry rule,
without a server (the live behaviour: tests/integration/test_updates.py)."""

from __future__ import annotations

import json
import zipfile

import pytest
import requests

from client.api import TorchServeError, retriable
from client.health import workers_ready
from client.versions import History, archive_version, copy_as, new_version, scaled_version, store_archive


def archive(path, version="1.0"):
    with zipfile.ZipFile(path, "w") as mar:
        mar.writestr("MAR-INF/MANIFEST.json", json.dumps({"model": {"modelName": "m", "modelVersion": version}}))
        mar.writestr("manifest.json", json.dumps({"name": "m", "version": version}))
        mar.writestr("weights.bin", b"\x00\x01")
    return path


@pytest.mark.parametrize("name", ["digits.mar", "digits-1.0-3fa2b1c9.mar", "a_b.c.mar"])
def test_bare_archive_names_are_accepted(name):
    assert store_archive(name) == name


@pytest.mark.parametrize(
    "name",
    ["/srv/digits.mar", "../digits.mar", "sub/digits.mar", "digits", "file:///x.mar", "https://h/x.mar", "a..mar", ""],
)
def test_paths_urls_and_directories_are_refused(name):
    with pytest.raises(ValueError, match="file name in the model store"):
        store_archive(name)


def test_a_name_must_be_a_file_in_the_store(tmp_path):
    (tmp_path / "dir.mar").mkdir()
    (tmp_path / "link.mar").symlink_to(archive(tmp_path / "real.mar"))
    assert store_archive("real.mar", tmp_path) == "real.mar"
    for name in ("dir.mar", "link.mar", "missing.mar"):
        with pytest.raises(ValueError, match="no such archive"):
            store_archive(name, tmp_path)


def test_version_names():
    sha = "3fa2b1c9" + "0" * 56
    assert new_version("1.0", sha, set()) == "1.0"
    assert new_version("1.0", sha, {"1.0"}) == "1.0-3fa2b1c9"
    assert scaled_version("1.0", {"1.0"}) == "1.0-s1"
    assert scaled_version("1.0-s1", {"1.0", "1.0-s1"}) == "1.0-s2"
    assert scaled_version("1.0-3fa2b1c9", {"1.0-3fa2b1c9-s4"}) == "1.0-3fa2b1c9-s5"


def test_a_copy_names_its_version_in_both_manifests_and_keeps_the_rest(tmp_path):
    source = archive(tmp_path / "m.mar")
    copy = copy_as(source, tmp_path, "1.0-s1")
    assert copy.name == "m-1.0-s1.mar"
    assert archive_version(copy) == ("m", "1.0-s1")
    with zipfile.ZipFile(copy) as mar:
        assert json.loads(mar.read("manifest.json"))["version"] == "1.0-s1"
        assert mar.read("weights.bin") == b"\x00\x01"
    assert archive_version(source) == ("m", "1.0")  # the source is untouched


def test_history_orders_defaults_and_forgets(tmp_path):
    history = History(tmp_path / "versions.json")
    for version in ("1.0", "1.0-aa", "1.0"):
        history.became_default("m", version)
    history.made("m", "1.0-aa", "m-1.0-aa.mar", "aa")
    assert history.model("m")["defaults"] == ["1.0-aa", "1.0"]
    assert history.forget("m", "1.0-aa") == "m-1.0-aa.mar"
    assert history.model("m") == {"defaults": ["1.0"], "archives": {}}


def test_only_unanswered_requests_are_retried():
    assert retriable(TorchServeError(500, {"type": "InternalServerException", "message": "Worker died."}, "p"))
    assert not retriable(TorchServeError(500, {"type": "InternalServerException", "message": "other"}, "p"))
    assert not retriable(TorchServeError(503, {"message": "Worker died."}, "p"))
    refused = requests.ConnectionError("refused")
    refused.__context__ = ConnectionRefusedError(111, "Connection refused")
    assert retriable(refused)
    assert not retriable(requests.ConnectionError(ConnectionResetError(104, "reset")))


def test_a_parked_version_needs_no_worker_but_the_default_always_one():
    parked = {"minWorkers": 0, "workers": []}
    assert workers_ready(parked, default=False)
    assert not workers_ready(parked, default=True)  # the default route would answer nothing
    assert not workers_ready({"minWorkers": 2, "workers": [{"status": "READY"}]}, default=False)
