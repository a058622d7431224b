"""The manifest an export writes, and loading the artifact it names.

Shared by ``export/`` (which writes manifests) and the handlers (which read them), so both agree
on one format. Nothing heavy happens at import time.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from handlers.errors import ArtifactMismatch, InvalidInput

MANIFEST_FILE = "manifest.json"


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict:
    """The manifest in ``folder`` (an export folder or an unpacked archive)."""
    return json.loads((Path(folder) / MANIFEST_FILE).read_text())


def _load_torchscript(path: Path) -> Callable:
    return torch.jit.load(str(path), map_location="cpu")


# Format name (as in the manifest) -> loader. New runtimes plug in here; handlers do not change.
LOADERS: dict[str, Callable[[Path], Callable]] = {"torchscript": _load_torchscript}


def load_artifact(folder: Path, manifest: dict) -> Callable:
    """Load the artifact the manifest names, after checking its sha256.

    Raises:
        ArtifactMismatch: the file on disk is not the one that was verified at export.
    """
    path = Path(folder) / manifest["artifact"]
    actual = sha256_of(path)
    if actual != manifest["sha256"]:
        raise ArtifactMismatch(
            f"{manifest['name']}: artifact {path.name} has sha256 {actual}, but the manifest "
            f"says {manifest['sha256']}; refusing to serve an unverified model. Re-run `make archive`."
        )
    fmt = manifest["format"]
    if fmt not in LOADERS:
        raise ValueError(f"{manifest['name']}: unknown artifact format {fmt!r}; known: {sorted(LOADERS)}")
    model = LOADERS[fmt](path)
    if hasattr(model, "eval"):
        model.eval()
    return model


@dataclass(frozen=True)
class InputSpec:
    """One model input: name, dtype and shape, where named dimensions are dynamic.

    ``shape`` mixes ints (fixed) and names (dynamic, e.g. ``"batch"``); ``dims`` bounds the
    dynamic ones: ``{"batch": {"min": 1, "max": 64}}``.
    """

    name: str
    dtype: str
    shape: tuple
    dims: dict

    @classmethod
    def from_dict(cls, d: dict) -> InputSpec:
        """Build from the manifest's ``inputs[i]`` entry."""
        return cls(d["name"], d["dtype"], tuple(d["shape"]), dict(d.get("dims", {})))

    def describe(self) -> str:
        """The spec as users read it: ``float32 tensor of shape [batch, 1, 8, 8]``."""
        return f"{self.dtype} tensor of shape [{', '.join(str(s) for s in self.shape)}]"

    def check(self, x: torch.Tensor) -> None:
        """Raise InvalidInput unless ``x`` has this dtype, rank, fixed sizes and dynamic bounds."""
        expected = self.describe()
        if str(x.dtype).removeprefix("torch.") != self.dtype:
            raise InvalidInput(f"expected {expected}, got dtype {str(x.dtype).removeprefix('torch.')}")
        if x.dim() != len(self.shape):
            raise InvalidInput(f"expected {expected}, got shape {list(x.shape)}")
        for size, want in zip(x.shape, self.shape, strict=True):
            if isinstance(want, int) and size != want:
                raise InvalidInput(f"expected {expected}, got shape {list(x.shape)}")
            bounds: dict[str, Any] = self.dims.get(want, {}) if isinstance(want, str) else {}
            low, high = bounds.get("min", 1), bounds.get("max")
            if size < low or (high is not None and size > high):
                limit = f"= {low}" if low == high else f"between {low} and {high}" if high else f">= {low}"
                raise InvalidInput(f"expected {expected} with {want} {limit}, got shape {list(x.shape)}")
        if x.is_floating_point() and not bool(torch.isfinite(x).all()):
            raise InvalidInput(f"expected {expected} of finite numbers, got NaN or Inf")
