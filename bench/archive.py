"""A model archive unpacked as a TorchServe worker sees it, and the handler loaded from it."""

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
    """Unzip ``mar`` into ``into`` (the worker's model_dir) and return it."""
    with zipfile.ZipFile(mar) as z:
        z.extractall(into)
    return into


def model_yaml(model_dir: Path) -> dict:
    """The archive's model-config.yaml (batchSize, maxBatchDelay, handler settings, ...)."""
    path = model_dir / "model-config.yaml"
    return yaml.safe_load(path.read_text()) if path.exists() else {}


def handler_class(model_dir: Path) -> type:
    """The archive's handler class, imported the way a worker does (archive root first on sys.path)."""
    sys.path.insert(0, str(model_dir))
    module = importlib.import_module(Path(mar_model(model_dir)["handler"]).stem)
    classes = [c for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__]
    return classes[0]


def mar_model(model_dir: Path) -> dict:
    """The ``model`` part of the archive's MAR-INF/MANIFEST.json (modelName, handler, ...)."""
    return json.loads((model_dir / "MAR-INF" / "MANIFEST.json").read_text())["model"]


def load_handler(model_dir: Path, threads: int | None = None, one_core: bool = False):
    """The archive's handler, initialized with a real ts Context as in a worker, and the model
    config it got. ``threads`` overrides ``handler.threads``; ``one_core`` runs a batch's length
    groups one at a time (``handler.group_threads: 1``), so that the handler uses only its own
    threads, as the in-process limit (one handler per worker, scaled by the workers) assumes."""
    config = model_yaml(model_dir)
    changes = ({"threads": threads} if threads is not None else {}) | ({"group_threads": 1} if one_core else {})
    if changes:
        config = config | {"handler": config.get("handler", {}) | changes}
    handler = handler_class(model_dir)()
    handler.initialize(context(model_dir, mar_model(model_dir)["modelName"], config, []))
    return handler, config


def context(model_dir: Path, name: str, config: dict, content_types: list[str]) -> Context:
    """A ts Context for one batch of bodies with these content types, built as ts.service builds it."""
    ctx = Context(name, str(model_dir), None, int(config.get("batchSize", 1)), None, "0.12.0", True, None, config)
    batch = [
        {"requestId": f"bench-{i}".encode(), "parameters": [{"name": "body", "contentType": ctype, "value": b""}]}
        for i, ctype in enumerate(content_types)
    ]
    headers, _, ids = Service.retrieve_data_for_inference(batch)
    ctx.request_processor, ctx.request_ids = headers, ids
    return ctx


def variant_archive(source: Path, target: Path, changes: dict) -> Path:
    """A copy of ``source`` whose model-config.yaml has ``changes`` (``threads`` and ``handler.<key>``
    go under ``handler``)."""
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "model-config.yaml" and changes:
                config = yaml.safe_load(data) or {}
                for key, value in changes.items():
                    if key == "threads" or key.startswith("handler."):
                        config.setdefault("handler", {})[key.removeprefix("handler.")] = value
                    else:
                        config[key] = value
                data = yaml.safe_dump(config, sort_keys=False).encode()
            zout.writestr(item, data)
    return target
