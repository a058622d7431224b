"""The inference-key renewer: ``python -m client.renewer renew --out FILE``, run as the server's user,
keeps FILE holding a fresh inference key and nothing else (keys by role: inference clients never hold
the API key; docs/SECURITY.md)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from client.api import TorchServeClient
from client.keys import read_private, write_role_file


def renew_into(ts, out: Path, mode: int) -> str:
    """Renew the inference key if it expires soon, then copy it alone into ``out``; returns the key."""
    key = ts.token("inference")  # renews (under the lock file) when expiring
    entry = ts.keys.read()["inference"]
    try:
        current = json.loads(read_private(out)).get("inference", {}).get("key")
    except (OSError, ValueError):
        current = None
    if current != entry["key"]:
        write_role_file(out, {"inference": entry}, mode)
    return key


def main(argv: list[str] | None = None) -> int:
    """``renew``: keep ``--out`` holding a fresh inference key (and nothing else), until stopped."""
    p = argparse.ArgumentParser(prog="python -m client.renewer", description="The inference-key renewer.")
    p.add_argument("command", choices=("renew",))
    p.add_argument("--config", type=Path, default=Path("config.properties"))
    p.add_argument("--key-file", type=Path, default=Path("key_file.json"), help="the server's (holds the API key)")
    p.add_argument("--out", type=Path, required=True, help="the inference clients' key file")
    p.add_argument("--mode", default="640", help="of --out, octal (default 640: owner and group read)")
    p.add_argument("--every", type=float, default=1.0, help="seconds between checks (default 1)")
    p.add_argument("--once", action="store_true")
    args = p.parse_args(argv)
    ts = TorchServeClient.from_config(args.config, key_file=args.key_file)
    while True:
        renew_into(ts, args.out, int(args.mode, 8))
        if args.once:
            return 0
        time.sleep(args.every)


if __name__ == "__main__":
    sys.exit(main())
