"""nginx in front of TorchServe's inference API: render its config, make a self-signed certificate.

Usage:
    python -m deploy.proxy cert --dir build/proxy            # self-signed, for 127.0.0.1 / localhost
    python -m deploy.proxy render --dir build/proxy --upstream 127.0.0.1:8080 --listen 8443
    nginx -p build/proxy -c build/proxy/nginx.conf           # (`make proxy` does all three)

The body cap is config.properties' max_request_size; the rest are flags (see --help).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from client.api import read_properties
from export.paths import CONFIG

TEMPLATE = Path(__file__).with_name("nginx.conf.template")


def render(
    folder: Path,
    upstream: str,
    listen: str,
    cert: Path | None = None,
    key: Path | None = None,
    header_timeout: int = 10,
    body_timeout: int = 10,
    connections: int = 16,
    rate: int = 100,
    burst: int = 200,
    config: Path = CONFIG,
) -> Path:
    """Write ``folder``/nginx.conf (and its temp folders); returns its path."""
    folder = folder.resolve()
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (folder / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    values = {
        "DIR": folder,
        "UPSTREAM": upstream,
        "LISTEN": listen,
        "CERT": (cert or folder / "cert.pem").resolve(),
        "KEY": (key or folder / "key.pem").resolve(),
        "HEADER_TIMEOUT": header_timeout,
        "BODY_TIMEOUT": body_timeout,
        "MAX_BODY": read_properties(config)["max_request_size"],
        "CONNECTIONS": connections,
        "RATE": rate,
        "BURST": burst,
    }
    text = TEMPLATE.read_text()
    for name, value in values.items():
        text = text.replace(f"@{name}@", str(value))
    target = folder / "nginx.conf"
    target.write_text(text)
    return target


def make_cert(folder: Path, days: int = 365) -> None:
    """A self-signed certificate and key (mode 600) for 127.0.0.1 and localhost, made here with openssl."""
    folder.mkdir(parents=True, exist_ok=True)
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", str(days)]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost"]
        + ["-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True,
        capture_output=True,
    )
    key.chmod(0o600)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m deploy.proxy", description=__doc__.splitlines()[0])
    p.add_argument("command", choices=("cert", "render"))
    p.add_argument("--dir", type=Path, default=Path("build/proxy"))
    p.add_argument("--upstream", default="127.0.0.1:8080", help="TorchServe's inference address")
    p.add_argument("--listen", default="8443", help="nginx's listen address (default: port 8443, all interfaces)")
    p.add_argument("--header-timeout", type=int, default=10)
    p.add_argument("--body-timeout", type=int, default=10)
    p.add_argument("--connections", type=int, default=16, help="open requests per client address")
    p.add_argument("--rate", type=int, default=100, help="requests per second per client address")
    p.add_argument("--burst", type=int, default=200)
    args = p.parse_args(argv)
    if args.command == "cert":
        make_cert(args.dir)
        return 0
    print(
        render(
            args.dir,
            args.upstream,
            args.listen,
            header_timeout=args.header_timeout,
            body_timeout=args.body_timeout,
            connections=args.connections,
            rate=args.rate,
            burst=args.burst,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
