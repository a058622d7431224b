"""Command line for the TorchServe client: ``python -m client COMMAND ...`` (see --help)."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from client.api import TorchServeClient, TorchServeError
from export.samples import CONTENT_TYPES


def parser() -> argparse.ArgumentParser:
    """One parser, every flag with its default."""
    p = argparse.ArgumentParser(prog="python -m client", description="Talk to the project's TorchServe.")
    p.add_argument(
        "--config", type=Path, default=Path("config.properties"), help="addresses from (default: config.properties)"
    )
    p.add_argument("--key-file", type=Path, default=Path("key_file.json"), help="tokens from (default: key_file.json)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("ping", help="server health")
    sub.add_parser("list", help="registered models")
    d = sub.add_parser("describe", help="a model's versions and workers")
    d.add_argument("model")
    d.add_argument("--version", default="all", help="one version (default: all)")
    r = sub.add_parser("register", help="register archives from the model store, by file name")
    r.add_argument("archives", nargs="+", help="e.g. digits.mar")
    r.add_argument("--workers", type=int, help="initial workers (default: the archive's minWorkers)")
    r.add_argument(
        "--skip-registered", action="store_true", help="no error for a model already registered (default: off)"
    )
    s = sub.add_parser("scale", help="set a model's worker count")
    s.add_argument("model")
    s.add_argument("workers", type=int)
    s.add_argument("--version", help="version (default: the default version)")
    sd = sub.add_parser("set-default", help="make a version the default")
    sd.add_argument("model")
    sd.add_argument("version")
    u = sub.add_parser("unregister", help="remove a model (or one version)")
    u.add_argument("model")
    u.add_argument("--version", help="version (default: the default version)")
    pr = sub.add_parser("predict", help="send files (or inline JSON) to a model")
    pr.add_argument("model")
    pr.add_argument("inputs", nargs="+", help="sample files, or a JSON document starting with {")
    pr.add_argument("--version", help="version (default: the default version)")
    pr.add_argument("--content-type", help="override (default: from the file extension)")
    return p


def run(args: argparse.Namespace, ts: TorchServeClient) -> object:
    """Carry out one command; returns what to print."""
    if args.command == "ping":
        return ts.ping()
    if args.command == "list":
        return ts.list_models()
    if args.command == "describe":
        return ts.describe(args.model, args.version)
    if args.command == "register":
        done = []
        for archive in args.archives:
            try:
                done.append(ts.register(archive, initial_workers=args.workers))
            except TorchServeError as err:
                if not (args.skip_registered and err.status == 409):
                    raise
                done.append({"status": f"{archive}: already registered"})
        return done
    if args.command == "scale":
        return ts.scale(args.model, args.workers, version=args.version)
    if args.command == "set-default":
        return ts.set_default(args.model, args.version)
    if args.command == "unregister":
        return ts.unregister(args.model, args.version)
    results = {}
    for item in args.inputs:
        if item.lstrip().startswith("{"):
            results[item] = ts.predict(args.model, json.loads(item), version=args.version)
        else:
            path = Path(item)
            content_type = args.content_type or CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream")
            results[item] = ts.predict(args.model, path.read_bytes(), content_type, args.version)
    return results


# A JSON array holding only numbers, as json.dumps(indent=2) writes it: one number per line.
NUMBERS = re.compile(r"\[\s+(-?[0-9][-+.0-9eE]*(?:,\s+-?[0-9][-+.0-9eE]*)*)\s+\]")


def readable(answer) -> str:
    """JSON indented by 2, but each array of numbers on one line (an embedding is one line, not 384)."""
    text = json.dumps(answer, indent=2)
    return NUMBERS.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text)


def main(argv: list[str] | None = None) -> int:
    """Print the answer as JSON; print TorchServe's errors readably and exit 1."""
    args = parser().parse_args(argv)
    ts = TorchServeClient.from_config(args.config, key_file=args.key_file)
    try:
        print(readable(run(args, ts)))
    except TorchServeError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
