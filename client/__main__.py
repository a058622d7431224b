"""Command line for the TorchServe client: ``python -m client COMMAND ...`` (see --help)."""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from pathlib import Path

from client.api import TorchServeClient, TorchServeError, read_properties
from client.updates import DRAIN_GRACE_S, KEEP_OLD_VERSIONS, UpdateError, Updater
from client.versions import History, store_archive
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
    s = sub.add_parser("scale", help="set a model's worker count without losing a request (see update)")
    s.add_argument("model")
    s.add_argument("workers", type=int)
    s.add_argument(
        "--in-place",
        action="store_true",
        help="TorchServe's own PUT /models (default: off; scaling down that way fails the batches it ends)",
    )
    s.add_argument("--version", help="with --in-place: version (default: the default version)")
    up = sub.add_parser("update", help="serve an archive as its model's new default version, with no downtime")
    up.add_argument("archive", help="a file name in the model store, e.g. digits.mar")
    rb = sub.add_parser("rollback", help="make the previous default version the default again")
    rb.add_argument("model")
    for command in (s, up, rb):
        command.add_argument(
            "--keep",
            type=int,
            default=KEEP_OLD_VERSIONS,
            help=f"parked old versions kept (default: {KEEP_OLD_VERSIONS})",
        )
        command.add_argument(
            "--drain-grace",
            type=float,
            default=DRAIN_GRACE_S,
            help=f"s a batch may still run once the old queue is empty (default: {DRAIN_GRACE_S})",
        )
        command.add_argument(
            "--state", type=Path, default=Path("var/versions.json"), help="version history (default: var/versions.json)"
        )
        command.add_argument("--log-dir", type=Path, default=Path("var/log"), help="server logs (default: var/log)")
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
        store = Path(read_properties(args.config).get("model_store", "model_store"))
        for archive in (store_archive(a, store) for a in args.archives):
            try:
                done.append(ts.register(archive, initial_workers=args.workers))
            except TorchServeError as err:
                if not (args.skip_registered and err.status == 409):
                    raise
                done.append({"status": f"{archive}: already registered"})
        return done
    if args.command in ("update", "rollback") or (args.command == "scale" and not args.in_place):
        return change(args, ts)
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


def change(args: argparse.Namespace, ts: TorchServeClient) -> dict:
    """update / rollback / scale through client.updates (progress lines go to stderr)."""
    store = Path(read_properties(args.config).get("model_store", "model_store"))
    history = History(args.state)
    ts.timeout = max(ts.timeout, 300.0)  # registering waits for the new workers to load
    say = functools.partial(print, file=sys.stderr)
    updater = Updater(ts, store, history, args.keep, args.drain_grace, args.log_dir, say)
    if args.command == "update":
        return updater.update(args.archive)
    return updater.rollback(args.model) if args.command == "rollback" else updater.scale(args.model, args.workers)


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
    except (TorchServeError, UpdateError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
