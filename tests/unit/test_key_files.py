"""Issue 22 findings 9 and 10, without a server: key files that are symlinks, writable by others or
owned by a stranger are refused; renewals in different processes never overlap (the lock file); the
role file and the readiness state file are written without following a symlink planted at their name."""

from __future__ import annotations

import json
import multiprocessing
import os
import time

import pytest

from client import health
from client.keys import KeyFile, KeyFileRefused, write_role_file

ENTRY = {"key": "a", "expiration time": "2026-11-26T05:12:24.801167Z"}


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "key_file.json"
    path.write_text(json.dumps({"inference": ENTRY, "API": {"key": "api"}}))
    path.chmod(0o600)
    return path


def test_a_private_key_file_is_read(key_file):
    assert KeyFile(key_file).key("inference").value == "a"


def test_a_symlinked_key_file_is_refused(key_file, tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to(key_file)
    with pytest.raises(KeyFileRefused, match="symlink"):
        KeyFile(link).key("inference")


@pytest.mark.parametrize("mode", [0o602, 0o620, 0o666])
def test_a_key_file_writable_by_others_is_refused(key_file, mode):
    key_file.chmod(mode)
    with pytest.raises(KeyFileRefused, match="writable"):
        KeyFile(key_file).key("inference")


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file away needs root")
def test_a_key_file_owned_by_a_stranger_is_refused_unless_trusted(key_file, monkeypatch):
    os.chown(key_file, 65534, 65534)
    with pytest.raises(KeyFileRefused, match="owned by uid 65534"):
        # root is trusted too, so pretend to be another user
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
        monkeypatch.setattr("client.keys.trusted_owners", lambda: {1000})
        KeyFile(key_file).key("inference")
    monkeypatch.undo()
    monkeypatch.setenv("KIT_KEY_OWNER", "65534")
    assert KeyFile(key_file).key("inference").value == "a"


def hold_lock(path: str, seconds: float, spans) -> None:
    with KeyFile(path).renewing():
        start = time.monotonic()
        time.sleep(seconds)
        spans.append((start, time.monotonic()))


def test_renewals_in_different_processes_never_overlap(key_file):
    with multiprocessing.Manager() as manager:
        spans = manager.list()
        procs = [multiprocessing.Process(target=hold_lock, args=(str(key_file), 0.2, spans)) for _ in range(4)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(30)
        spans = sorted(spans)
    assert len(spans) == 4
    assert all(after[0] >= before[1] for before, after in zip(spans, spans[1:], strict=False)), spans


def test_the_role_file_replaces_a_planted_symlink_instead_of_following_it(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    out = tmp_path / "inference.json"
    out.symlink_to(victim)
    write_role_file(out, {"inference": ENTRY}, mode=0o640)
    assert victim.read_text() == "untouched" and not out.is_symlink()
    assert out.stat().st_mode & 0o777 == 0o640 and json.loads(out.read_text()) == {"inference": ENTRY}


def test_the_readiness_state_is_private_and_never_follows_a_symlink(tmp_path, monkeypatch):
    monkeypatch.delenv("KIT_HEALTH_STATE", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(health.tempfile, "tempdir", None)  # re-read TMPDIR
    path = health.state_file("http://127.0.0.1:8081")
    assert path.parent != tmp_path and path.parent.stat().st_mode & 0o777 == 0o700
    victim = tmp_path / "victim"
    victim.write_text("untouched")
    path.symlink_to(victim)
    assert health.warmed(path, "1:2") == {}  # a symlink is not read
    health.write_state(path, "1:2", {"m/1": {"ok": True}})
    assert victim.read_text() == "untouched" and health.warmed(path, "1:2") == {"m/1": {"ok": True}}
    assert path.stat().st_mode & 0o777 == 0o600
