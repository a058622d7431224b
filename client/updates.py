"""Update, roll back and scale a model on a running TorchServe without losing a request.

Every change goes through a version beside the serving one (TorchServe keeps several versions of a
model; ``/predictions/<model>`` reaches the default):

1. register the new version (named by ``client.versions``) with the serving version's worker count;
2. wait until its workers are READY, send it its archive's samples at ``/predictions/<m>/<v>`` and
   compare each answer with the model's ``samples/expected.json``;
3. make it the default: requests that arrive from then on are queued for it;
4. drain the old version: wait until its job queue has stayed empty for maxBatchDelay plus the drain
   grace. TorchServe exposes the queue (describe-model's ``jobQueueStatus``), not the batch a worker
   holds; the grace is the time that batch may take;
5. park the old version (0 workers: ending idle workers loses nothing) and unregister parked
   versions beyond the ``keep`` newest.

If step 1 or 2 fails, the new version is removed (it never had traffic), the old one keeps serving
and ``UpdateError`` names the cause. Scaling up is done in place (TorchServe only adds workers);
scaling down goes through a new version, because TorchServe ends a worker even while it holds a batch.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path

from client.answers import difference
from client.api import TorchServeClient, TorchServeError
from client.files import sha256_file
from client.health import workers_ready
from client.samples import archive_samples
from client.versions import (
    History,
    archive_version,
    copy_as,
    expected_of,
    new_version,
    scaled_version,
    store_archive,
)

KEEP_OLD_VERSIONS = 2  # parked versions kept registered for rollback (`make ... KEEP=`, --keep)
DRAIN_GRACE_S = 1.0  # after the old queue empties: the longest a batch already in a worker may take
LOG_TAIL_BYTES = 1 << 20  # of model_log.log searched for a new version's load error
EXCEPTION_LINE = re.compile(r"MODEL_LOG - ((?:[\w.]+\.)?\w*(?:Error|Exception|Mismatch)\w*: .*)$")
WRAPPER = re.compile(r"RuntimeError: \d{3} - ")  # TorchServe's worker wraps the handler's error in this


class UpdateError(RuntimeError):
    """The new version did not load, did not answer its samples correctly, or the change failed."""


class Updater:
    """The update, rollback and scale commands on one server.

    Example:
        Updater(server.client(timeout=300), server.model_store, History(path)).update("digits.mar")
    """

    def __init__(
        self,
        ts: TorchServeClient,
        store: Path,
        history: History,
        keep: int = KEEP_OLD_VERSIONS,
        drain_grace: float = DRAIN_GRACE_S,
        log_dir: Path | None = None,
        say: Callable[[str], None] = print,
    ):
        self.ts, self.store, self.history = ts, Path(store), history
        self.keep, self.drain_grace, self.log_dir, self.say = keep, drain_grace, log_dir, say

    # What the server holds
    def versions(self, model: str) -> dict[str, dict]:
        """Registered versions of ``model`` by name ({} when it is not registered)."""
        try:
            return {d["modelVersion"]: d for d in self.ts.describe(model, "all")}
        except TorchServeError as err:
            if err.status == 404:
                return {}
            raise

    def default(self, model: str) -> dict:
        return self.ts.describe(model, None)[0]

    # The commands
    def update(self, archive: str) -> dict:
        """Serve ``archive`` (a file name in the store) as its model's default version."""
        source = self.store / store_archive(archive, self.store)
        model, version = archive_version(source)
        sha = sha256_file(source)
        registered = self.versions(model)
        known = self.history.model(model)["archives"]
        same = [v for v, a in known.items() if a["sha256"] == sha and v in registered]
        current = self.default(model) if registered else None
        if current and current["modelVersion"] in same:
            self.say(f"{model} {current['modelVersion']}: already serves {archive}")
            return {"model": model, "from": current["modelVersion"], "to": current["modelVersion"], "seconds": 0.0}
        if same:  # this archive was served before and is still registered (parked)
            return self.switch(model, current, same[-1], fresh=False)
        target = new_version(version, sha, set(registered))
        copy = copy_as(source, self.store, target)
        self.history.made(model, target, copy.name, sha)
        workers = current["minWorkers"] if current else None
        self.register(model, target, copy.name, workers)
        if current is None:  # the first version: default by registration, no traffic before
            started = time.monotonic()
            self.check_or_remove(model, target, fresh=True)
            self.history.became_default(model, target)
            return {"model": model, "from": None, "to": target, "seconds": round(time.monotonic() - started, 2)}
        return self.switch(model, current, target, fresh=True)

    def rollback(self, model: str) -> dict:
        """Make the version that was default before the current one the default again; the
        current one is then unregistered (the history forgets it)."""
        current = self.default(model)
        registered = self.versions(model)
        earlier = [v for v in self.history.model(model)["defaults"] if v != current["modelVersion"]]
        earlier = [v for v in earlier if v in registered]
        if not earlier:
            raise UpdateError(f"{model}: no earlier version is registered to roll back to (keep={self.keep})")
        report = self.switch(model, current, earlier[-1], fresh=False)
        self.remove(model, current["modelVersion"])
        return report

    def scale(self, model: str, workers: int) -> dict:
        """Give ``model``'s default version ``workers`` workers: in place when that only adds
        workers, else through a copy of its archive registered as a new version."""
        if workers < 1:
            raise UpdateError(f"{model}: the default version needs at least 1 worker, not {workers}")
        current = self.default(model)
        started = time.monotonic()
        if workers >= current["maxWorkers"]:
            self.ts.scale(model, workers, version=current["modelVersion"], synchronous=False)  # see register
            self.wait_ready(model, current["modelVersion"])
            seconds = round(time.monotonic() - started, 2)
            v = current["modelVersion"]
            self.say(f"{model} {v}: {workers} workers, in place ({seconds} s)")
            return {"model": model, "from": v, "to": v, "seconds": seconds, "workers": workers}
        source = self.store / current["modelUrl"]
        target = scaled_version(current["modelVersion"], set(self.versions(model)))
        copy = copy_as(source, self.store, target)
        origin = self.history.model(model)["archives"].get(current["modelVersion"], {})
        self.history.made(model, target, copy.name, origin.get("sha256") or sha256_file(source))
        self.register(model, target, copy.name, workers)
        return self.switch(model, current, target, fresh=True, workers=workers)

    # The steps
    def register(self, model: str, version: str, file: str, workers: int | None) -> None:
        """Register without waiting: TorchServe's synchronous form blocks a network thread that it
        shares with inference connections until the workers have loaded, and every request on those
        connections waits as long (measured: 30 s timeouts while a version loaded under load)."""
        self.say(f"{model} {version}: registering {file}" + (f" with {workers} workers" if workers else ""))
        try:
            self.ts.register(file, initial_workers=workers, synchronous=False)
        except TorchServeError as err:
            self.remove(model, version)
            raise UpdateError(f"{model} {version} was refused ({err}); {self.serving(model)}") from err

    def switch(self, model: str, current: dict, target: str, fresh: bool, workers: int | None = None) -> dict:
        """Steps 2-5 from ``current`` (the default's description) to the registered ``target``."""
        old = current["modelVersion"]
        started = time.monotonic()
        workers = workers or current["minWorkers"]
        described = self.versions(model)[target]
        if described["minWorkers"] != workers:  # parked; or the archive's minWorkers overrode initial_workers
            self.ts.scale(model, workers, version=target, synchronous=False)  # no traffic yet; see register
        self.check_or_remove(model, target, fresh)
        self.ts.set_default(model, target)
        switched, default_at = time.monotonic(), time.time()
        self.say(f"{model}: {target} is the default; draining {old}")
        drained = self.drain(model, old)
        self.ts.scale(model, 0, version=old)  # drained: its workers are idle
        parked_at = time.time()
        self.history.became_default(model, target)
        self.prune(model)
        seconds = round(time.monotonic() - started, 2)
        self.say(f"{model}: {old} -> {target} in {seconds} s (old version drained in {drained} s, parked)")
        workers = len(self.versions(model)[target]["workers"])
        return {"model": model, "from": old, "to": target, "seconds": seconds, "drain_s": drained, "workers": workers,
                "check_s": round(switched - started, 2), "default_at": default_at, "parked_at": parked_at}  # fmt: skip

    def check_or_remove(self, model: str, version: str, fresh: bool) -> None:
        """Wait for the version's workers and check its samples; on failure remove it (``fresh``:
        registered by this command) or park it again, and raise UpdateError."""
        try:
            self.wait_ready(model, version)
            self.check_samples(model, version)
        except (UpdateError, TorchServeError) as err:
            if fresh:
                self.remove(model, version)
            else:
                self.ts.scale(model, 0, version=version)
            raise UpdateError(f"{model} {version}: {err}; {self.serving(model)}") from err

    def wait_ready(self, model: str, version: str, timeout: float | None = None) -> dict:
        """Poll until the version's workers are READY. A load that fails shows as the handler's
        exception in model_log.log (when the logs are at hand) or as workers not READY within the
        version's startupTimeout and a margin."""
        started = time.monotonic()
        while True:
            described = self.versions(model).get(version)
            if described is None:
                raise UpdateError(f"{model} {version} is no longer registered")
            if workers_ready(described):
                return described
            limit = timeout or described.get("startupTimeout", 120) + 30
            if hint := self.log_hint(model, version):
                raise UpdateError(f"{model} {version} failed to load{hint}")
            if time.monotonic() - started > limit:
                states = [w["status"] for w in described["workers"]]
                raise UpdateError(f"{model} {version} failed to load: workers not READY within {limit:.0f} s: {states}")
            time.sleep(0.2)

    def check_samples(self, model: str, version: str) -> int:
        """Send the version every sample its archive carries; UpdateError on a wrong or failed answer."""
        archive = self.store / self.versions(model)[version]["modelUrl"]
        samples = archive_samples(archive)
        if not samples:
            raise UpdateError("its archive carries no samples to check it with")
        expected, tolerance = expected_of(archive) or ({}, None)
        for path, body, content_type in samples:
            name = Path(path).name
            try:
                answer = self.ts.predict(model, body, content_type, version)
            except TorchServeError as err:
                raise UpdateError(f"sample {name}: {err}") from err
            if name in expected and (found := difference(answer, expected[name], tolerance)):
                raise UpdateError(f"sample {name} answered wrongly ({found}; samples/expected.json)")
        checked = sum(Path(p).name in expected for p, _, _ in samples)
        self.say(f"{model} {version}: answered its {len(samples)} samples ({checked} checked against expected.json)")
        return len(samples)

    def drain(self, model: str, version: str) -> float:
        """Wait until ``version``'s queue has been empty for maxBatchDelay + the drain grace."""
        started = time.monotonic()
        described = self.versions(model)[version]
        settle = described["maxBatchDelay"] / 1000 + self.drain_grace
        deadline = started + described["responseTimeout"] + settle  # TorchServe's own bound on a batch
        quiet_since = None
        while time.monotonic() < deadline:
            pending = self.versions(model)[version]["jobQueueStatus"]["pendingRequests"]
            now = time.monotonic()
            quiet_since = (quiet_since or now) if pending == 0 else None
            if quiet_since is not None and now - quiet_since >= settle:
                break
            time.sleep(0.05)
        return round(time.monotonic() - started, 2)

    def prune(self, model: str) -> None:
        """Unregister the parked versions the history knows beyond the ``keep`` newest."""
        registered = self.versions(model)
        defaults = [v for v in self.history.model(model)["defaults"] if v in registered]
        for version in defaults[: max(0, len(defaults) - 1 - self.keep)]:
            self.remove(model, version)

    def remove(self, model: str, version: str) -> None:
        """Unregister a version that is not the default (idle or never used) and delete its kit copy."""
        try:
            self.ts.unregister(model, version)
        except TorchServeError as err:
            if err.status != 404:
                raise
        file = self.history.forget(model, version)
        if file:
            (self.store / file).unlink(missing_ok=True)

    def serving(self, model: str) -> str:
        try:
            return f"{model} {self.default(model)['modelVersion']} still serves"
        except TorchServeError:
            return f"{model} is not registered"

    def log_hint(self, model: str, version: str) -> str:
        """The handler's last exception for this version in model_log.log, when the logs are at hand
        (TorchServe's own ``RuntimeError: 500 - ...`` wrapper skipped: it names no cause)."""
        log = self.log_dir / "model_log.log" if self.log_dir else None
        if not log or not log.exists():
            return ""
        with open(log, "rb") as f:  # the tail: the log grows with every request
            f.seek(max(0, log.stat().st_size - LOG_TAIL_BYTES))
            text = f.read().decode(errors="replace")
        worker = f"-{model}_{version}-"
        found = [
            m.group(1)
            for line in text.splitlines()
            if worker in line and (m := EXCEPTION_LINE.search(line)) and not WRAPPER.match(m.group(1))
        ]
        return f"; model_log.log: {found[-1][:400]}" if found else ""
