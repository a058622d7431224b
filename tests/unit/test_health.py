"""The health and key logic without a server: worker states, warm-up records, expiry times,
the samples an archive carries, and the settings a probe reads."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime, timedelta

import pytest

from client.health import server_config, warmed, workers_ready, write_state
from client.keys import Key, KeyFile, parse_expiry
from client.samples import archive_samples


def described(min_workers: int, *states: str) -> dict:
    return {"minWorkers": min_workers, "workers": [{"status": s} for s in states]}


@pytest.mark.parametrize(
    ("description", "ready"),
    [
        (described(2, "READY", "READY"), True),
        (described(2, "READY"), False),  # one of two restarting: not at full strength
        (described(2, "READY", "UNLOADING"), False),
        (described(1, "READY", "READY"), True),  # scaled above its minimum
        (described(0), False),  # no live worker at all, whatever the minimum says
        (described(0, "READY"), True),
    ],
)
def test_workers_ready(description, ready):
    assert workers_ready(description) is ready


def test_warm_up_counts_only_for_the_frontend_that_was_warmed(tmp_path):
    state = tmp_path / "warm.json"
    write_state(state, "123:1000.00", {"digits/1.0": {"samples": 3}})
    assert warmed(state, "123:1000.00") == {"digits/1.0": {"samples": 3}}
    assert warmed(state, "123:2000.00") == {}  # same pid, new process: a restart starts cold
    assert warmed(state, None) == {}
    assert warmed(tmp_path / "missing.json", "123:1000.00") == {}
    state.write_text("{half a fi")
    assert warmed(state, "123:1000.00") == {}


def test_expiry_times_as_java_writes_them():
    assert parse_expiry("2026-11-26T05:12:24.801167Z") == datetime(2026, 11, 26, 5, 12, 24, 801167, tzinfo=UTC)
    assert parse_expiry("2026-11-26T05:12:24.801167123Z").microsecond == 801167  # nanoseconds
    assert parse_expiry("2026-11-26T05:12:24Z").microsecond == 0
    assert parse_expiry(None) is None and parse_expiry("tomorrow") is None


def test_a_key_is_expiring_within_the_margin():
    now = datetime.now(UTC)
    assert Key("k", now + timedelta(seconds=2)).expiring(margin=5)
    assert not Key("k", now + timedelta(seconds=60)).expiring(margin=5)
    assert Key("k", now - timedelta(seconds=1)).expiring(margin=0)
    assert not Key("k", None).expiring()  # the API key never expires


def test_key_file_reads_each_key_afresh(tmp_path):
    path = tmp_path / "key_file.json"
    entry = {"key": "a", "expiration time": "2026-11-26T05:12:24.801167Z"}
    path.write_text(json.dumps({"inference": entry, "management": entry, "API": {"key": "api"}}))
    keys = KeyFile(path)
    assert keys.key("inference").value == "a" and keys.key("API").expires is None
    path.write_text(json.dumps({"inference": {**entry, "key": "b"}, "API": {"key": "api"}}))
    assert keys.key("inference").value == "b"


def test_archive_samples_are_the_ones_its_manifest_lists(tmp_path):
    mar = tmp_path / "m.mar"
    listed = [
        {"path": "samples/a.json", "content_type": "application/json"},
        {"path": "samples/c.wav", "content_type": "audio/wav"},
    ]
    with zipfile.ZipFile(mar, "w") as z:
        z.writestr("manifest.json", json.dumps({"samples": listed}))
        for name in (
            "samples/a.json",
            "samples/c.wav",
            "samples/b.png",
            "samples/expected.json",
            "samples/similarity.json",
        ):
            z.writestr(name, b"x")
        z.writestr("model.pt", b"")
    assert [(n, t) for n, _, t in archive_samples(mar)] == [
        ("samples/a.json", "application/json"),
        ("samples/c.wav", "audio/wav"),  # the spec's content type, not a guess from the extension
    ]


def test_probe_reads_the_config_and_the_ts_variables_it_honours(tmp_path, monkeypatch):
    config = tmp_path / "config.properties"
    config.write_text("inference_address=http://0.0.0.0:8080\nmanagement_address=http://127.0.0.1:8081\n")
    monkeypatch.setenv("TS_CONFIG_FILE", str(config))
    monkeypatch.setenv("TS_MANAGEMENT_ADDRESS", "http://127.0.0.1:9999")
    assert server_config()["management_address"] == "http://127.0.0.1:8081"  # not honoured: envvars off
    config.write_text(config.read_text() + "enable_envvars_config=true\n")
    assert server_config()["management_address"] == "http://127.0.0.1:9999"
