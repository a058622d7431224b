"""A fake TorchServe worker: an archive unpacked as a worker sees it, a real ``ts`` Context for a
batch, and the archive's handler loaded and initialized the way ``ts.model_loader`` does.

The tests, the fuzz suite and the bench share it, as TorchServe's own tests share ``mock_context``.
It lives in tools/ (not handlers/, which archives copy, nor tests/, which the bench must not import).
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
import zipfile
from pathlib import Path

import yaml
from ts.context import Context
from ts.service import Service


def unpack(mar: Path, into: Path) -> Path:
    """Unzip an archive as TorchServe does for a worker; returns the model folder."""
    with zipfile.ZipFile(mar) as z:
        z.extractall(into)
    return into


def model_yaml(model_dir: Path) -> dict:
    """The archive's model-config.yaml (batchSize, maxBatchDelay, handler settings, ...)."""
    path = Path(model_dir) / "model-config.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def mar_manifest(model_dir: Path) -> dict:
    """The archive's MAR-INF/MANIFEST.json (its ``model`` part names modelName and handler)."""
    return json.loads((Path(model_dir) / "MAR-INF" / "MANIFEST.json").read_text())


def context(model_dir: Path, requests: list[tuple], config: dict | None = None) -> Context:
    """A real ts Context for one batch, built the way ts.service.Service builds it for a worker.

    ``requests``: per request (parameter name, content type) or (name, content type, headers dict).
    ``config``: the model-config the handler sees (default: the archive's model-config.yaml).
    """
    manifest = mar_manifest(model_dir)
    config = model_yaml(model_dir) if config is None else config
    name, batch_size = manifest["model"]["modelName"], int(config.get("batchSize", 1))
    ctx = Context(name, str(model_dir), manifest, batch_size, None, "0.12.0", True, None, config)
    batch = [
        {
            "requestId": f"req-{i}".encode(),
            "parameters": [{"name": r[0], "contentType": r[1], "value": b""}],
            "headers": [{"name": k.encode(), "value": v.encode()} for k, v in (r[2] if len(r) > 2 else {}).items()],
        }
        for i, r in enumerate(requests)
    ]
    headers, _, ids = Service.retrieve_data_for_inference(batch)
    ctx.request_processor, ctx.request_ids = headers, ids
    return ctx


def handler_class(model_dir: Path) -> type:
    """The archive's handler class, imported the way a worker does (archive root first on sys.path)."""
    sys.path.insert(0, str(model_dir))
    module = importlib.import_module(Path(mar_manifest(model_dir)["model"]["handler"]).stem)
    classes = [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__]
    return classes[0]


def load_handler(model_dir: Path, handler_settings: dict | None = None):
    """The archive's handler, initialized as in a worker; ``handler_settings`` are laid over the
    model-config's ``handler:`` section. Returns (handler, the model-config it got)."""
    config = model_yaml(model_dir)
    if handler_settings:
        config = config | {"handler": config.get("handler", {}) | handler_settings}
    handler = handler_class(model_dir)()
    handler.initialize(context(model_dir, [], config))
    return handler, config
