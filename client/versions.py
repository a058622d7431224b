"""Model versions on TorchServe: the archive file each is registered from, and the history of defaults.

TorchServe names a version after its archive (``MAR-INF/MANIFEST.json``) and refuses to register the
same model and version twice. The kit registers every version from a file of its own in the model
store, ``<model>-<version>.mar``, that it never rewrites, so a restart from a snapshot loads the
same bytes. Version scheme:

- the spec's version (``1.0``) the first time;
- ``<spec version>-<first 8 hex digits of the archive's sha256>`` (``1.0-3fa2b1c9``) when the
  archive was rebuilt under a version that is already registered;
- ``<version>-s<k>`` for the same archive registered again with fewer workers (a lossless scale-down).

The history of default versions (rollback's "previous") is a small JSON file beside the server's
state (``var/versions.json`` for `make serve`'s server).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

MAR_MANIFEST = "MAR-INF/MANIFEST.json"
KIT_MANIFEST = "manifest.json"  # handlers/artifact.py's MANIFEST_FILE (the image carries client/ only)
# What the kit registers: a bare archive name in the model store. No path, no URL, no directory.
ARCHIVE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*\.mar")
SCALED = re.compile(r"-s(\d+)$")


def store_archive(name: str, store: Path | None = None) -> str:
    """``name`` if it is a bare ``.mar`` file name (and, with ``store``, a file there); else ValueError.

    TorchServe's management API also loads directories and paths anywhere on its disk, which
    ``allowed_urls`` never checks: the kit's own register path narrows it to archives in the store.
    """
    if not ARCHIVE_NAME.fullmatch(name) or ".." in name:
        raise ValueError(
            f"{name!r}: give an archive's file name in the model store (e.g. digits.mar), not a path or URL"
        )
    if store is not None:
        path = Path(store) / name
        if path.is_symlink() or not path.is_file():
            raise ValueError(f"{name}: no such archive in the model store {store}")
    return name


def archive_version(path: Path) -> tuple[str, str]:
    """(model name, version) the archive registers as."""
    with zipfile.ZipFile(path) as mar:
        model = json.loads(mar.read(MAR_MANIFEST))["model"]
    return model["modelName"], model["modelVersion"]


def new_version(version: str, sha256: str, registered: set[str]) -> str:
    """The version a rebuilt archive registers as: the spec's, else suffixed with its digest."""
    return version if version not in registered else f"{version}-{sha256[:8]}"


def scaled_version(version: str, registered: set[str]) -> str:
    """``<version>-s<k>``: the next free name for the same archive registered with other workers."""
    base = SCALED.sub("", version)
    taken = [int(m.group(1)) for v in registered if v.startswith(base) and (m := SCALED.search(v))]
    return f"{base}-s{max(taken, default=0) + 1}"


def copy_as(source: Path, store: Path, version: str) -> Path:
    """``<store>/<model>-<version>.mar``: ``source`` with both manifests naming ``version``."""
    model, current = archive_version(source)
    target = Path(store) / f"{model}-{version}.mar"
    fd, tmp = tempfile.mkstemp(dir=store, prefix=f".{model}-", suffix=".part")
    os.close(fd)
    try:
        with zipfile.ZipFile(source) as src, zipfile.ZipFile(tmp, "w") as dst:
            for info in src.infolist():
                data = src.read(info)
                if version != current and info.filename in (MAR_MANIFEST, KIT_MANIFEST):
                    data = _with_version(data, info.filename, version)
                dst.writestr(info, data)
        os.replace(tmp, target)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return target


def _with_version(data: bytes, name: str, version: str) -> bytes:
    document = json.loads(data)
    if name == MAR_MANIFEST:
        document["model"]["modelVersion"] = version
    else:
        document["version"] = version
    return (json.dumps(document, indent=2) + "\n").encode()


def expected_of(archive: Path) -> tuple[dict, Any] | None:
    """(samples/expected.json, tolerance) of the model an archive holds, from the model's folder;
    None when there is no such folder or file (answers are then only required to be 200)."""
    try:
        from export.spec import EXPECTED, load_spec  # not in the image, which carries client/ only

        with zipfile.ZipFile(archive) as mar:
            spec = load_spec(json.loads(mar.read(KIT_MANIFEST))["name"])
        path = spec.folder / "samples" / EXPECTED
        return (json.loads(path.read_text()), spec.tolerance) if path.exists() else None
    except (ImportError, KeyError, FileNotFoundError, ValueError):
        return None


class History:
    """Per model: the versions that were default, oldest first, and the archive files the kit made."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def _read(self) -> dict:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def _write(self, state: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.path)

    def model(self, name: str) -> dict:
        """``{"defaults": [...], "archives": {version: {"file", "sha256"}}}`` of one model."""
        entry = self._read().get(name, {})
        return {"defaults": entry.get("defaults", []), "archives": entry.get("archives", {})}

    def update(self, name: str, entry: dict) -> None:
        state = self._read()
        state[name] = entry
        self._write(state)

    def became_default(self, name: str, version: str) -> None:
        entry = self.model(name)
        entry["defaults"] = [v for v in entry["defaults"] if v != version] + [version]
        self.update(name, entry)

    def made(self, name: str, version: str, file: str, sha256: str) -> None:
        entry = self.model(name)
        entry["archives"][version] = {"file": file, "sha256": sha256}
        self.update(name, entry)

    def forget(self, name: str, version: str) -> str | None:
        """Drop a version; returns the archive file the kit made for it, if any."""
        entry = self.model(name)
        entry["defaults"] = [v for v in entry["defaults"] if v != version]
        made = entry["archives"].pop(version, None)
        self.update(name, entry)
        return made["file"] if made else None
