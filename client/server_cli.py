"""Command line for the project's TorchServe: ``python -m client.server_cli start|stop|restart|status``
(`make serve`, `make stop`, `make restart`, `make status`)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from client.server import ROOT, STARTUP_TIMEOUT, Server, ServerError, project_server


def parser() -> argparse.ArgumentParser:
    """One parser, every flag with its default."""
    p = argparse.ArgumentParser(
        prog="python -m client.server_cli", description="Start or stop the project's TorchServe."
    )
    p.add_argument(
        "action",
        choices=("start", "stop", "restart", "status"),
        help="start (fresh, from config.properties), stop, restart (from the last config snapshot: same models, "
        "versions, defaults and workers), status",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=STARTUP_TIMEOUT,
        help=f"seconds to wait for /ping (default: {STARTUP_TIMEOUT:.0f})",
    )
    return p


def start(server: Server, timeout: float) -> int:
    if server.running:
        print(f"TorchServe already running (pid {server.pid}); `make stop` first to restart it")
        return 0
    if not shutil.which("java") and not os.environ.get("JAVA_HOME"):
        print("TorchServe needs Java 17: install a JDK (e.g. apt-get install openjdk-17-jre-headless)", file=sys.stderr)
        return 1
    server.start(timeout)
    print(f"TorchServe is up (pid {server.pid}); logs in {server.log_dir.relative_to(ROOT)}/")
    return 0


def restart(server: Server, timeout: float) -> int:
    versions = server.restart(timeout)
    print(f"TorchServe restarted from its last snapshot in {server.snapshot_dir.relative_to(ROOT)}/:")
    for d in versions:
        print(f"  {d['modelName']} {d['modelVersion']}: {len(d['workers'])} workers")
    return 0


def stop(server: Server) -> int:
    running = server.running
    server.stop()
    print("TorchServe stopped" if running else "TorchServe was not running")
    return 0


def status(server: Server) -> int:
    """Says whether it runs; not running is an answer, not an error (exit 0 either way)."""
    print(f"running (pid {server.pid})" if server.running else "not running")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Carry out one action on the project's server; 1 when it failed to start."""
    args = parser().parse_args(argv)
    server = project_server()
    try:
        if args.action == "start":
            return start(server, args.timeout)
        if args.action == "restart":
            return restart(server, args.timeout)
    except ServerError as err:
        print(err, file=sys.stderr)
        return 1
    return stop(server) if args.action == "stop" else status(server)


if __name__ == "__main__":
    sys.exit(main())
