"""Shared fixtures: every model exported, archived and unpacked once per session, from the
current code, into temporary folders (never the developer's build/ or model_store/)."""

from __future__ import annotations

from pathlib import Path

import pytest

from export.archive import build_archive
from export.build import export_model
from export.paths import model_names
from export.spec import load_spec
from tests.support import unpack

MODELS = model_names()


def pytest_collection_modifyitems(config, items):
    """Mark tests by folder: tests/unit -> unit, tests/integration -> integration."""
    for item in items:
        parts = Path(item.fspath).parts
        for marker in ("unit", "integration"):
            if marker in parts:
                item.add_marker(getattr(pytest.mark, marker))


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory) -> Path:
    """Every model exported and verified (build/<name>/ layout)."""
    root = tmp_path_factory.mktemp("build")
    for name in MODELS:
        export_model(load_spec(name), root / name)
    return root


@pytest.fixture(scope="session")
def model_store(build_dir, tmp_path_factory) -> Path:
    """A model store with every model's archive."""
    store = tmp_path_factory.mktemp("model_store")
    for name in MODELS:
        build_archive(name, store=store, build=build_dir)
    return store


@pytest.fixture(scope="session")
def unpacked(model_store, tmp_path_factory) -> dict[str, Path]:
    """Each archive unzipped, as a worker sees it: model name -> model folder."""
    return {name: unpack(model_store / f"{name}.mar", tmp_path_factory.mktemp(name)) for name in MODELS}
