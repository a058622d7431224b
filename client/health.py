"""Readiness, liveness and warm-up of a TorchServe, for probes that hold no token.

Usage: ``python -m client.health ready|live|warmup [--config FILE] [--timeout S]`` (exit 0 = yes).

- ``live``: the frontend answers HTTP at all (any status: /ping says 500 while a worker restarts and
  400 without a token, and neither is a reason to restart the server).
- ``warmup``: wait for each registered model's workers, send it the samples its own archive carries,
  and record that in a state file tied to this frontend process (its pid and start time), so a
  restart starts cold again. Prints time-to-ready per model.
- ``ready``: every registered model (every version) has at least its minWorkers workers, all READY
  (at least one), and has been warmed up since this frontend started.

The probe runs beside the server (same machine, container or pod) and reads the addresses from the
server's config.properties (``--config``, else $TS_CONFIG_FILE, else ./config.properties), with TS_*
address variables applied as TorchServe applies them, and the key from key_file.json when tokens are on.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import requests

from client.api import TorchServeClient, TorchServeError, read_properties
from client.keys import read_private, write_role_file
from client.samples import archive_samples

PROBE_TIMEOUT_S = 5.0


def server_config(config: Path | None = None) -> dict[str, str]:
    """The server's settings: its config file, then TS_* overrides when it honours them."""
    path = config or Path(os.environ.get("TS_CONFIG_FILE", "config.properties"))
    props = read_properties(path)
    if props.get("enable_envvars_config") == "true":
        for key in ("inference_address", "management_address", "model_store"):
            props[key] = os.environ.get(f"TS_{key.upper()}", props.get(key, ""))
    return props


def local_url(address: str) -> str:
    """An address to call from beside the server (0.0.0.0 means any interface: use loopback)."""
    return address.replace("://0.0.0.0", "://127.0.0.1")


def client_for(props: dict[str, str], key_file: Path, timeout: float = PROBE_TIMEOUT_S) -> TorchServeClient:
    keys = key_file if props.get("disable_token_authorization") != "true" else None
    return TorchServeClient(
        local_url(props["inference_address"]), local_url(props["management_address"]), keys, timeout=timeout
    )


def frontend_identity(management_url: str) -> str | None:
    """``<pid>:<start time>`` of the process listening on the management port; None if not found."""
    port = urlsplit(management_url).port
    for conn in psutil.net_connections(kind="tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return f"{conn.pid}:{psutil.Process(conn.pid).create_time():.2f}"
    return None


def state_file(management_url: str) -> Path:
    """Where warm-up records what it did ($KIT_HEALTH_STATE, else one file per management port in a
    folder of this user's under TMPDIR, mode 700: no one else can plant or read it)."""
    if os.environ.get("KIT_HEALTH_STATE"):
        return Path(os.environ["KIT_HEALTH_STATE"])
    return private_dir() / f"warm-{urlsplit(management_url).port}.json"


def private_dir() -> Path:
    """``$TMPDIR/torchserve-kit-<uid>``, created mode 700; refused if it is a symlink or not ours."""
    path = Path(tempfile.gettempdir()) / f"torchserve-kit-{os.geteuid()}"
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise PermissionError(f"{path} is not a private folder of this user (symlink, owner or mode)")
    return path


def warmed(path: Path, identity: str | None) -> dict:
    """The models warmed up since this frontend started: ``{"model/version": record}``."""
    try:
        state = json.loads(read_private(path))
    except (OSError, ValueError):
        return {}
    return state.get("models", {}) if identity and state.get("frontend") == identity else {}


def versions(ts: TorchServeClient) -> list[dict]:
    """Every version of every registered model, as the management API describes it, each with
    ``"default"``: whether it is the version /predictions/<model> reaches (the listed archive)."""
    found = []
    for m in ts.list_models():
        found += [d | {"default": d["modelUrl"] == m["modelUrl"]} for d in ts.describe(m["modelName"], "all")]
    return found


def workers_ready(description: dict, default: bool = True) -> bool:
    """Every worker READY and at least minWorkers of them. The default version needs at least one
    (minWorkers 0 there answers nothing); another version with minWorkers 0 (parked by an update,
    client/updates.py) needs none. One rule for the probes, warm-up, restarts and updates."""
    workers = description["workers"]
    need = max(1, description["minWorkers"]) if default else description["minWorkers"]
    return len(workers) >= need and all(w["status"] == "READY" for w in workers)


def parked(description: dict) -> bool:
    """A version that is not the default and is meant to have no workers: nothing to warm up."""
    return not description.get("default", True) and description["minWorkers"] == 0


def readiness(ts: TorchServeClient, state: Path) -> list[str]:
    """Why the server is not ready (empty: it is)."""
    identity = frontend_identity(ts.management_url)
    if identity and draining_mark(state).exists() and draining_mark(state).read_text() == identity:
        return ["draining: the server got SIGTERM and stops once its requests are answered"]
    done = warmed(state, identity)
    described = versions(ts)
    if not described:
        return ["no model registered"]
    reasons = []
    for d in described:
        name = f"{d['modelName']}/{d['modelVersion']}"
        if not workers_ready(d, d["default"]):
            states = [w["status"] for w in d["workers"]]
            reasons.append(f"{name}: workers {states}, need {max(int(d['default']), d['minWorkers'])} READY")
        elif name not in done and not parked(d):
            reasons.append(f"{name}: not warmed up since this server started")
    return reasons


def liveness(ts: TorchServeClient) -> list[str]:
    """Why the frontend is not live (empty: it answers HTTP)."""
    try:
        ts.session.get(f"{ts.inference_url}/ping", timeout=ts.timeout)  # the session ignores proxies
    except requests.RequestException as err:
        return [f"inference port does not answer: {err.__class__.__name__}"]
    return []


def warm_one(ts: TorchServeClient, d: dict, store: Path) -> dict:
    """Send one model version every sample in its archive; returns what it took."""
    samples = archive_samples(store / d["modelUrl"])
    if not samples:
        raise TorchServeError(0, "its archive has no samples/ to warm up with", f"warm up {d['modelName']}")
    started = time.monotonic()
    for _name, body, content_type in samples:
        ts.predict(d["modelName"], body, content_type, d["modelVersion"])
    return {"samples": len(samples), "warmup_s": round(time.monotonic() - started, 3)}


def warmup(ts: TorchServeClient, store: Path, state: Path, timeout: float) -> dict:
    """Warm every registered model version once its workers are READY; record and return the results."""
    deadline = time.monotonic() + timeout
    identity, started = None, None
    while identity is None and time.monotonic() < deadline:  # the frontend may still be starting
        identity = frontend_identity(ts.management_url)
        time.sleep(0 if identity else 0.5)
    if identity is None:
        raise TimeoutError(f"no server listens on {ts.management_url}")
    started = float(identity.split(":")[1])
    done = warmed(state, identity)
    while True:
        try:
            pending = [d for d in versions(ts) if f"{d['modelName']}/{d['modelVersion']}" not in done and not parked(d)]
        except (requests.RequestException, TorchServeError):
            pending = None  # the management API is not up yet
        if pending == []:
            return done
        for d in pending or []:
            if workers_ready(d, d["default"]):
                record = warm_one(ts, d, store) | {"ready_after_start_s": round(time.time() - started, 2)}
                done[f"{d['modelName']}/{d['modelVersion']}"] = record
                write_state(state, identity, done)
        if time.monotonic() > deadline:
            raise TimeoutError(f"not every model was ready within {timeout:.0f}s")
        time.sleep(0.5)


def write_state(path: Path, identity: str, models: dict) -> None:
    """Replace the state file in one step (a probe may read it at any moment), never following a
    symlink planted at its name."""
    write_role_file(path, {"frontend": identity, "models": models}, mode=0o600)


def draining_mark(state: Path) -> Path:
    """Written at SIGTERM (``drain``): readiness says no from then on, for this frontend only."""
    return state.with_suffix(".draining")


def drain(ts: TorchServeClient, state: Path, delay: float, grace: float, quiet: float = 1.0) -> list[str]:
    """What start.sh runs on SIGTERM before it stops the server: readiness off at once; then ``delay``
    s for load balancers to see it and stop sending; then until every version's queue has been
    empty for ``quiet`` s (a batch already in a worker ends within it), ``grace`` s at most in all.
    Returns what was still queued at the deadline (empty: drained)."""
    deadline = time.monotonic() + grace
    identity = frontend_identity(ts.management_url)
    if identity:
        mark = os.open(draining_mark(state), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with open(mark, "w") as f:
            f.write(identity)
    time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
    quiet_since, queued = None, []
    while time.monotonic() < deadline:
        queued = [
            f"{d['modelName']}/{d['modelVersion']}" for d in versions(ts) if d["jobQueueStatus"]["pendingRequests"]
        ]
        now = time.monotonic()
        quiet_since = (quiet_since or now) if not queued else None
        if quiet_since is not None and now - quiet_since >= quiet:
            return []
        time.sleep(0.1)
    return [f"{name}: requests still queued after {grace:.0f} s" for name in queued] or ["not quiet for 1 s"]


def main(argv: list[str] | None = None) -> int:
    """Exit 0 when the answer is yes; say why not on stderr."""
    p = argparse.ArgumentParser(prog="python -m client.health", description="Probes for TorchServe (no token needed).")
    p.add_argument("check", choices=("ready", "live", "warmup", "drain"))
    p.add_argument("--config", type=Path, help="the server's config (default: $TS_CONFIG_FILE or ./config.properties)")
    p.add_argument("--key-file", type=Path, default=Path("key_file.json"), help="when tokens are on (default: ./)")
    p.add_argument(
        "--timeout", type=float, default=300.0, help="warmup: s to wait for workers; drain: s in all (default: 300)"
    )
    p.add_argument("--delay", type=float, default=5.0, help="drain: s before watching the queues (default: 5)")
    args = p.parse_args(argv)
    props = server_config(args.config)
    ts = client_for(props, args.key_file, timeout=PROBE_TIMEOUT_S if args.check != "warmup" else 120.0)
    state = state_file(ts.management_url)
    try:
        if args.check == "warmup":
            store = Path(props.get("model_store", "model_store"))
            print(json.dumps(warmup(ts, store, state, args.timeout), indent=2))
            return 0
        if args.check == "drain":
            reasons = drain(ts, state, args.delay, args.timeout)
        else:
            reasons = liveness(ts) if args.check == "live" else readiness(ts, state)
    except (requests.RequestException, TorchServeError, TimeoutError, OSError, KeyError) as err:
        reasons = [f"{err.__class__.__name__}: {err}"]
    for reason in reasons:
        print(f"not {args.check}: {reason}", file=sys.stderr)
    return 1 if reasons else 0


if __name__ == "__main__":
    sys.exit(main())
