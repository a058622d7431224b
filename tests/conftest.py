"""Shared fixtures: every model exported, archived and unpacked once per session, from the
current code, into temporary folders (never the developer's build/ or model_store/).

``build_dir`` / ``model_store`` / ``unpacked`` hold the TorchScript build of each model (its
default format); the ``format_*`` fixtures add every other format the specs list (ONNX, AOTInductor)
under their served names (``digits_onnx``): built only by the tests that ask for them.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from export.archive import build_archive
from export.build import export_model
from export.paths import DEFAULT_FORMAT, model_names, served_name
from export.spec import load_spec
from reliability.record import record
from tests.support import unpack

MODELS = model_names()
# (model, format, served name) for every format each spec lists, the default first.
SERVED = [(m, f, served_name(m, f)) for m in MODELS for f in load_spec(m).formats]
OTHER_FORMATS = [s for s in SERVED if s[1] != DEFAULT_FORMAT]


def pytest_collection_modifyitems(config, items):
    """Mark tests by folder: tests/unit -> unit, tests/integration -> integration."""
    for item in items:
        parts = Path(item.fspath).parts
        for marker in ("unit", "integration"):
            if marker in parts:
                item.add_marker(getattr(pytest.mark, marker))


STARTED = pytest.StashKey[float]()


def pytest_sessionstart(session):
    session.config.stash[STARTED] = time.monotonic()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The run's outcome as a reliability record (written only when `make reliability` asks)."""
    counts = {k: len(terminalreporter.stats.get(k, [])) for k in ("passed", "failed", "error", "skipped")}
    seconds = round(time.monotonic() - config.stash[STARTED], 1)
    record("tests", **{"errors" if k == "error" else k: n for k, n in counts.items()}, seconds=seconds)


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


@pytest.fixture(scope="session")
def format_build_dir(build_dir) -> Path:
    """``build_dir`` plus every model in every other format its spec lists (build/<served name>/).
    AOTInductor compiles C++: the slowest fixture of the suite (about a minute on 2 cores)."""
    for name, fmt, served in OTHER_FORMATS:
        export_model(load_spec(name), build_dir / served, fmt)
    return build_dir


@pytest.fixture(scope="session")
def format_store(format_build_dir, model_store) -> Path:
    """``model_store`` plus the archive of every other format (``digits_onnx.mar``, ...)."""
    for _, _, served in OTHER_FORMATS:
        build_archive(served, store=model_store, build=format_build_dir)
    return model_store


@pytest.fixture(scope="session")
def format_unpacked(format_store, unpacked, tmp_path_factory) -> dict[str, Path]:
    """Every served name (each model in each of its formats) -> its unpacked archive."""
    others = {
        served: unpack(format_store / f"{served}.mar", tmp_path_factory.mktemp(served)) for *_, served in OTHER_FORMATS
    }
    return unpacked | others
