"""What a server may load: archive digests pinned outside the archive, and a config that keeps security.

An archive is code (its handler.py, an AOTInductor .so): the sha256 in its manifest catches corruption,
not tampering, since whoever edits the archive edits that too. So ``make archive`` writes the digest of
every archive to ``<model store>/SHA256SUMS`` (sha256sum's format), ``make kserve`` copies each model's
line into its InferenceService (env KIT_ARCHIVE_DIGESTS), and the archive is checked against it before
registering (client/register.py) and before the server starts (deploy/container/start.sh).

Usage in the container: ``python -m client.trust [--model-store DIR] [--baked FILE]`` (exit 1: refused).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from client.files import read_properties, sha256_file

DIGESTS = "SHA256SUMS"
ENV = "KIT_ARCHIVE_DIGESTS"  # the pinned lines themselves (KServe), preferred over the file
# Settings a KServe bucket's config.properties may not change from the image's: tokens, binds, what
# may be registered, what an archive may install, the JVM and body caps.
PINNED_SETTINGS = (
    "inference_address",
    "management_address",
    "metrics_address",
    "grpc_inference_address",
    "grpc_management_address",
    "disable_token_authorization",
    "enable_model_api",
    "allowed_urls",
    "install_py_dep_per_model",
    "enable_envvars_config",
    "max_request_size",
    "max_response_size",
    "vmargs",
    "plugins_path",
    "workflow_store",
)


class TrustError(PermissionError):
    """An archive without a pinned digest, or with another one; or a config that drops a setting."""


def parse_digests(text: str) -> dict[str, str]:
    """``{archive file name: sha256}`` from sha256sum lines (``<hex>  <name>``, ``*`` for binary mode)."""
    pins = {}
    for line in text.splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            pins[name.lstrip("*").strip()] = digest.lower()
    return pins


def pinned(store: Path) -> dict[str, str]:
    """The pins: $KIT_ARCHIVE_DIGESTS if set, else ``<store>/SHA256SUMS`` (none: empty)."""
    if os.environ.get(ENV):
        return parse_digests(os.environ[ENV])
    path = Path(store) / DIGESTS
    return parse_digests(path.read_text()) if path.exists() else {}


def record_digest(store: Path, archive: Path) -> None:
    """Pin ``archive``'s digest in ``<store>/SHA256SUMS`` (replacing its old line)."""
    path = Path(store) / DIGESTS
    pins = parse_digests(path.read_text()) if path.exists() else {}
    pins[archive.name] = sha256_file(archive)
    path.write_text("".join(f"{digest}  {name}\n" for name, digest in sorted(pins.items())))


def verify_archive(store: Path, name: str) -> str:
    """Refuse (TrustError) ``<store>/<name>.mar`` unless its sha256 is the pinned one; returns it."""
    file = name if name.endswith(".mar") else f"{name}.mar"
    expected = pinned(store).get(file)
    if expected is None:
        raise TrustError(f"{file}: no digest pinned in {DIGESTS} (or ${ENV}); run `make archive`")
    actual = sha256_file(Path(store) / file)
    if actual != expected:
        raise TrustError(f"{file}: sha256 {actual} is not the pinned {expected}: refusing to load it")
    return actual


def verify_store(store: Path) -> list[str]:
    """Verify every archive in ``store``; returns their names."""
    names = sorted(p.name for p in Path(store).glob("*.mar"))
    for name in names:
        verify_archive(store, name)
    return names


def check_config(config: Path, baked: Path) -> None:
    """Refuse a config (a KServe bucket's) whose security settings differ from the image's ``baked`` one."""
    got, want = read_properties(config), read_properties(baked)
    changed = [k for k in PINNED_SETTINGS if got.get(k) != want.get(k)]
    if changed:
        shown = ", ".join(f"{k}={got.get(k)!r} (image: {want.get(k)!r})" for k in changed)
        raise TrustError(f"{config} changes security settings baked into the image: {shown}")


def main(argv: list[str] | None = None) -> int:
    """The container's start check: the config keeps the image's security, every archive is pinned."""
    p = argparse.ArgumentParser(prog="python -m client.trust", description=__doc__.splitlines()[0])
    p.add_argument("--model-store", type=Path, help="default: the config's model_store")
    p.add_argument("--config", type=Path, default=Path(os.environ.get("TS_CONFIG_FILE", "config.properties")))
    p.add_argument("--baked", type=Path, help="the image's own config: --config may not change its security")
    p.add_argument("--pin", nargs="+", type=Path, metavar="MAR", help="pin these archives, just built (`make archive`)")
    p.add_argument("--pin-missing", action="store_true", help="pin archives of the store that have no line yet")
    args, _ = p.parse_known_args(argv)  # the rest are torchserve's arguments
    try:
        if args.pin:  # `make archive`, right after export.archive built them
            for archive in args.pin:
                record_digest(archive.parent, archive)
            return 0
        if args.pin_missing:  # `make archive`: archives built before digests were pinned
            store = args.model_store or Path("model_store")
            for archive in sorted(store.glob("*.mar")):
                if archive.name not in pinned(store):
                    record_digest(store, archive)
            return 0
        if args.baked and args.baked.resolve() != args.config.resolve():
            check_config(args.config, args.baked)
        store = args.model_store or Path(read_properties(args.config).get("model_store", "model_store"))
        names = verify_store(store)
    except (TrustError, OSError, ValueError) as err:
        print(f"refusing to start: {err}", file=sys.stderr)
        return 1
    print(f"archives verified against pinned digests: {', '.join(names) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
