"""Small file readers the client modules share (only the standard library: the image runs them)."""

from __future__ import annotations

import hashlib
from pathlib import Path


def read_properties(path: Path) -> dict[str, str]:
    """The key=value lines of a Java properties file such as config.properties."""
    props = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    return props


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
