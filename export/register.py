"""Register archives on the project's running TorchServe, and reload the ones rebuilt since.

Usage: ``python -m export.register [--force] digits digits_onnx ...`` (``make serve``, ``make reload``).
TorchServe unpacks an archive when it registers it and never looks again: a rebuilt ``.mar`` is not
served until it is registered anew. This records each archive's sha256 at registration
(``var/registered.json``), so `make serve` re-registers (unregister + register) exactly the ones that
changed. A model registered some other way has no record: it is left alone, with a hint.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from client.api import TorchServeClient, TorchServeError
from client.trust import verify_archive
from export.archive import check_archive
from export.paths import CONFIG, MODEL_STORE, ROOT
from handlers.artifact import sha256_of

RECORD = ROOT / "var" / "registered.json"


def sync(ts: TorchServeClient, names: list[str], force: bool, store: Path = MODEL_STORE, record: Path = RECORD) -> int:
    """Register each served name's archive; re-register it if it changed since (``force``: always)."""
    known = json.loads(record.read_text()) if record.exists() else {}
    registered = {m["modelName"] for m in ts.list_models()}
    for name in names:
        archive = store / f"{name}.mar"
        digest, version = sha256_of(archive), check_archive(archive)["version"]
        verify_archive(store, name)  # its digest pinned by `make archive` (client/trust.py)
        if name in registered:
            if not force and known.get(name) == digest:
                print(f"{name}: registered, archive unchanged")
                continue
            if not force and name not in known:
                print(f"{name}: registered outside `make`; if model_store/{name}.mar changed: make reload MODEL={name}")
                continue
            try:
                ts.unregister(name, version)
            except TorchServeError as err:
                if err.status != 404:  # registered, but at another version: keep that one
                    raise
            print(f"{name}: reloading" if force else f"{name}: archive rebuilt since it was registered; reloading")
        ts.register(f"{name}.mar")
        print(f"{name} {version}: registered")
        known[name] = digest
        record.parent.mkdir(parents=True, exist_ok=True)
        record.write_text(json.dumps(known, indent=2) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line: register (and reload) served names on the project's server."""
    parser = argparse.ArgumentParser(prog="python -m export.register", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help="served names (digits, digits_onnx)")
    parser.add_argument("--force", action="store_true", help="re-register even if unchanged (default: off)")
    args = parser.parse_args(argv)
    ts = TorchServeClient.from_config(CONFIG, key_file=ROOT / "key_file.json")
    try:
        return sync(ts, args.names, args.force)
    except (TorchServeError, OSError) as err:
        print(f"register failed: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
