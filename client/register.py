"""Register archives on the project's running TorchServe, and serve the ones rebuilt since, with no downtime.

Usage: ``python -m client.register [--force] digits digits_onnx ...`` (``make serve``, ``make reload``).
TorchServe unpacks an archive when it registers it and never looks again: a rebuilt ``.mar`` is not
served until it is registered anew. Each served name goes through ``client.updates.Updater.update``:
a new or rebuilt archive is registered as a new version beside the serving one, checked against its
samples, made the default, and the old version is drained and parked (README, "Updates without
downtime"). An unchanged archive is left alone. A model registered some other way (no history in
``var/versions.json``) is left alone too, with a hint, unless ``--force``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from client.api import TorchServeClient, TorchServeError
from client.trust import verify_archive
from client.updates import KEEP_OLD_VERSIONS, UpdateError, Updater
from client.versions import History
from export.paths import CONFIG, MODEL_STORE, ROOT

RECORD = ROOT / "var" / "versions.json"  # the history `python -m client update|rollback` reads too
LOGS = ROOT / "var" / "log"


def sync(
    ts: TorchServeClient,
    names: list[str],
    force: bool,
    store: Path = MODEL_STORE,
    record: Path = RECORD,
    keep: int = KEEP_OLD_VERSIONS,
) -> int:
    """Serve each served name's archive: register it, or update to it if it changed since."""
    history = History(record)
    updater = Updater(ts, store, history, keep, log_dir=LOGS if record == RECORD else None)
    registered = {m["modelName"] for m in ts.list_models()}
    for name in names:
        verify_archive(store, name)  # its digest pinned by `make archive` (client/trust.py)
        if name in registered and not history.model(name)["defaults"] and not force:
            print(f"{name}: registered outside `make`; to serve model_store/{name}.mar: make reload MODEL={name}")
            continue
        updater.update(f"{name}.mar")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command line: register (and update) served names on the project's server."""
    parser = argparse.ArgumentParser(prog="python -m client.register", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="+", help="served names (digits, digits_onnx)")
    parser.add_argument(
        "--force", action="store_true", help="also update models registered outside `make` (default: off)"
    )
    parser.add_argument(
        "--keep", type=int, default=KEEP_OLD_VERSIONS, help=f"parked old versions kept (default: {KEEP_OLD_VERSIONS})"
    )
    args = parser.parse_args(argv)
    ts = TorchServeClient.from_config(CONFIG, key_file=ROOT / "key_file.json", timeout=300)
    try:
        return sync(ts, args.names, args.force, keep=args.keep)
    except (TorchServeError, UpdateError, OSError, ValueError) as err:
        print(f"register failed: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
