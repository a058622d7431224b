"""Updates under load: a reload with a rebuilt archive, a rollback and a scale 2 -> 1 -> 2, each while
threads send a model's samples over keep-alive connections and check every answer.

Each phase starts the load, runs one update (client/updates.py) once the load is going, and stops
when the update is done and at least ``requests`` answers came back. A failure is an answer that is
not 200 or not the sample's reference answer. The answering version comes from the handler's
``X-Kit-Model-Version`` header; in each thread's answers it must change exactly once per version
change. Short form: tests/integration/test_updates.py; long form (8 threads, >= 5,000 requests per
phase), recorded in docs/RELIABILITY.md by `make reliability`:

    python -m reliability.updates --requests 5000 --threads 8 [--model digits]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
import tempfile
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import torch

from client.answers import difference
from client.api import TorchServeClient
from client.samples import archive_samples
from client.server import Server
from client.updates import UpdateError, Updater
from client.versions import History
from export.paths import MODEL_STORE

VERSION_HEADER = "X-Kit-Model-Version"  # handlers/base.py sets it: the manifest's version
TOLERANCE = 1e-4  # answers carry 6 decimals; another batch size may move the last digit


class Load:
    """Closed-loop load on one model until ``stop()``: per thread, (status, version, failure) per answer."""

    def __init__(self, client: TorchServeClient, model: str, samples: list, references: dict, threads: int):
        self.client, self.model, self.samples, self.references = client, model, samples, references
        self.answers: list[list[tuple[int, str, str | None]]] = [[] for _ in range(threads)]
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(threads)]

    @property
    def count(self) -> int:
        return sum(map(len, self.answers))

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def _run(self, index: int) -> None:
        session, own, url = requests.Session(), self.answers[index], f"{self.client.inference_url}/predictions"
        session.trust_env = False
        i = index
        while not self._stop.is_set():
            name, body, content_type = self.samples[i % len(self.samples)]
            i += 1
            headers = self.client.auth_headers("inference") | {"Content-Type": content_type}
            sent = time.time()
            try:
                r = session.post(f"{url}/{self.model}", data=body, headers=headers, timeout=30)
            except requests.RequestException as err:
                own.append((0, "", f"{type(err).__name__} (sent {_clock(sent)}): {err}"))
                continue
            failure = None if r.status_code == 200 else f"{r.status_code}: {r.text[:200]}"
            if failure is None:
                found = difference(r.json(), self.references[name], TOLERANCE, strict=True)
                failure = f"{name} differs from the reference: {found}" if found else None
            own.append((r.status_code, r.headers.get(VERSION_HEADER, ""), failure))


def references(client: TorchServeClient, model: str, samples: list) -> dict[str, Any]:
    """Each sample's answer before any update: what every later answer must equal."""
    return {name: client.predict(model, body, ctype) for name, body, ctype in samples}


def phase(
    load_of: Callable[[], Load], action: Callable[[], dict], name: str, requests_min: int, before: float = 0.5
) -> dict:
    """Run ``action`` under a fresh load; the figures of this phase (requests, failures, switches)."""
    load = load_of().start()
    error = None
    try:
        time.sleep(before)  # the update starts under load
        started = time.monotonic()
        try:
            report = action()
        except UpdateError as err:  # a failing version: the old one must have kept serving
            report, error = {}, str(err)
        seconds = time.monotonic() - started
        while load.count < requests_min:
            time.sleep(0.05)
    finally:
        load.stop()
    failures = [f for own in load.answers for (_, _, f) in own if f]
    statuses = Counter(s for own in load.answers for (s, _, f) in own if f)
    # Per thread (a closed loop: its answers are in order), how often the answering version changed.
    switches = [sum(a[1] != b[1] for a, b in zip(own, own[1:], strict=False)) for own in load.answers]
    versions = list(dict.fromkeys(v for own in load.answers for (_, v, _) in own))
    return {
        "action": name,
        "old": report.get("from"),
        "new": report.get("to"),
        "threads": len(load.answers),
        "requests": load.count,
        "failed": len(failures),
        "statuses": {str(k): v for k, v in statuses.items()},
        "examples": failures[:3],
        "seconds": round(seconds, 2),
        "drain_s": report.get("drain_s"),
        "workers_after": report.get("workers"),
        "switches_per_thread": sorted(set(switches)),
        "versions_seen": versions,
        "error": error,
        "times": " ".join(f"{k[:-3]} {_clock(report[k])}" for k in ("default_at", "parked_at") if k in report),
    }


def _clock(t: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(t)) + f"{t % 1:.3f}"[1:]


def rebuilt(source: Path, target: Path) -> Path:
    """A copy of ``source`` with the same contents and new timestamps: what a rebuild under the
    same version gives (torch-model-archiver stamps every entry), so a different sha256."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            info.date_time = (2030, 1, 1, 0, 0, 0)
            dst.writestr(info, src.read(info))
    return target


def broken(source: Path, target: Path) -> Path:
    """A copy of ``source`` whose manifest's sha256 does not match its artifact: fails at load."""
    return _rewritten(
        source, target, lambda name, data, m: data if name != "manifest.json" else _json(m | {"sha256": "0" * 64})
    )


def wrong(source: Path, target: Path) -> Path:
    """A copy of a TorchScript archive whose weights are negated (sha256 updated): it loads and
    answers, wrongly."""

    def negate(name: str, data: bytes, manifest: dict) -> bytes:
        if name == manifest["artifact"]:
            module = torch.jit.load(io.BytesIO(data))
            with torch.no_grad():
                for param in module.parameters():
                    param.neg_()
            out = io.BytesIO()
            torch.jit.save(module, out)
            return out.getvalue()
        return data

    staged = _rewritten(source, target.with_suffix(".part"), negate)
    with zipfile.ZipFile(staged) as mar:
        manifest = json.loads(mar.read("manifest.json"))
        digest = hashlib.sha256(mar.read(manifest["artifact"])).hexdigest()
    manifest["sha256"] = digest  # and every device entry that names the same file (export/devices.py)
    for entry in manifest.get("runtime", {}).get("devices", {}).values():
        if entry["artifact"] == manifest["artifact"]:
            entry["sha256"] = digest
    _rewritten(staged, target, lambda name, data, m: data if name != "manifest.json" else _json(manifest))
    staged.unlink()
    return target


def _json(document: dict) -> bytes:
    return (json.dumps(document, indent=2) + "\n").encode()


def _rewritten(source: Path, target: Path, change: Callable[[str, bytes, dict], bytes]) -> Path:
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        manifest = json.loads(src.read("manifest.json"))
        for info in src.infolist():
            dst.writestr(info, change(info.filename, src.read(info), manifest))
    return target


def prepare_store(source: Path, store: Path) -> str:
    """``store`` with ``<model>.mar`` and its rebuilt, broken and wrong variants; returns the model."""
    model = source.stem
    shutil.copy2(source, store / f"{model}.mar")
    rebuilt(source, store / f"{model}-rebuilt.mar")
    broken(source, store / f"{model}-broken.mar")
    wrong(source, store / f"{model}-wrong.mar")
    return model


def run_updates(server: Server, model: str, threads: int, requests_min: int, say=print) -> list[dict]:
    """On a server whose store ``prepare_store`` filled: register, then under load reload a rebuilt
    archive, roll back, scale 2 -> 1 -> 2, and try an archive that fails at load and one that answers
    wrongly. One dict per phase."""
    client = server.client(timeout=300)
    history = History(server.workdir / "versions.json")
    updater = Updater(client, server.model_store, history, log_dir=server.log_dir, say=say)
    updater.update(f"{model}.mar")
    updater.scale(model, 2)
    samples = archive_samples(server.model_store / f"{model}.mar")
    refs = references(client, model, samples)

    def load_of() -> Load:
        return Load(server.client(), model, samples, refs, threads)

    plan = [
        ("reload (rebuilt archive)", lambda: updater.update(f"{model}-rebuilt.mar")),
        ("rollback", lambda: updater.rollback(model)),
        ("scale 2 -> 1", lambda: updater.scale(model, 1)),
        ("scale 1 -> 2", lambda: updater.scale(model, 2)),
        ("new version fails to load", lambda: updater.update(f"{model}-broken.mar")),
        ("new version answers wrongly", lambda: updater.update(f"{model}-wrong.mar")),
    ]
    return [phase(load_of, action, name, requests_min) for name, action in plan]


def main(argv: list[str] | None = None) -> int:
    """Print each phase; exit 1 on any failed request."""
    parser = argparse.ArgumentParser(prog="python -m reliability.updates", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="digits", help="served name (default: digits)")
    parser.add_argument("--threads", type=int, default=8, help="client threads (default: 8)")
    parser.add_argument("--requests", type=int, default=5000, help="at least this many per phase (default: 5000)")
    args = parser.parse_args(argv)
    phases = measure(args.model, args.threads, args.requests)
    for p in phases:
        print(p)
    return 1 if any(p["failed"] for p in phases) else 0


def measure(model: str, threads: int, requests_min: int, store: Path = MODEL_STORE) -> list[dict]:
    """A throwaway server on a private store made from ``<model>.mar``: the phases of ``run_updates``."""
    with tempfile.TemporaryDirectory(prefix="kit-updates-") as tmp:
        private = Path(tmp) / "store"
        private.mkdir()
        prepare_store(store / f"{model}.mar", private)
        with Server.throwaway(private, work=Path(tmp) / "work") as server:
            return run_updates(server, model, threads, requests_min)


if __name__ == "__main__":
    sys.exit(main())
