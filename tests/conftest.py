"""Shared fixtures: each served name exported, archived and unpacked on first use (once per session),
from the current code, into temporary folders (never the developer's build/ or model_store/).

A model's primary format is the first its spec lists (``<model>``); every other format it lists is
served as ``<model>_<format>``. A model that fails to export, archive or load fails its own tests
only: the failure is kept and raised again for that model's tests, never for another model's.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from export.archive import build_archive
from export.build import export_model
from export.paths import model_names, served_name
from export.spec import load_spec
from reliability.record import record
from tests.support import unpack

MODELS = model_names()
# (model, format, served name) for every format each spec lists, the primary (served as the model) first.
SERVED = [(m, f, served_name(m, f)) for m in MODELS for f in load_spec(m).formats]
OTHER_FORMATS = [s for s in SERVED if s[2] != s[0]]
MODEL_OF = {served: model for model, _, served in SERVED}
FORMAT_OF = {served: fmt for _, fmt, served in SERVED}


class Lazy(dict):
    """A dict whose missing keys are made on first use by ``make(key)``. A failure is kept: later uses
    of that key raise it again (as ``ModelFailed``), other keys are unaffected."""

    def __init__(self, make):
        super().__init__()
        self.make, self.failed = make, {}

    def __missing__(self, key):
        if key in self.failed:
            raise ModelFailed(f"{key} failed earlier in this session: {self.failed[key]!r}") from self.failed[key]
        try:
            value = self.make(key)
        except Exception as error:
            self.failed[key] = error
            raise
        self[key] = value
        return value


class ModelFailed(Exception):
    """A served name whose export, archive or handler failed earlier in the session."""


class LazyDir(type(Path())):
    """A folder whose entry for a served name is made on first use: ``build_dir / "digits"`` exports
    digits, ``model_store / "digits.mar"`` archives it (both through ``made``, a ``Lazy``)."""

    made: Lazy | None = None
    suffix_of_entries = ""

    def __truediv__(self, key):
        served = str(key).removesuffix(self.suffix_of_entries)
        if self.made is not None and served in MODEL_OF:
            self.made[served]  # noqa: B018 - made on first use
        return Path(super().__truediv__(key))


def lazy_dir(path: Path, made: Lazy, suffix: str = "") -> LazyDir:
    folder = LazyDir(path)
    folder.made, folder.suffix_of_entries = made, suffix
    return folder


class Artifacts:
    """Every served name's export (build/<served>/), archive (<store>/<served>.mar) and unpacked
    archive, each made the first time a test asks for it."""

    def __init__(self, root: Path):
        self.build, self.store, self.root = root / "build", root / "model_store", root
        self.store.mkdir(parents=True)
        self.exported = Lazy(self._export)
        self.archived = Lazy(self._archive)
        self.unpacked = Lazy(self._unpack)
        self.refused: dict[str, Exception] = {}  # served name -> why the server would not register it

    def _export(self, served: str) -> Path:
        export_model(load_spec(MODEL_OF[served]), self.build / served, FORMAT_OF[served])
        return self.build / served

    def _archive(self, served: str) -> Path:
        self.exported[served]  # noqa: B018 - the export first
        return build_archive(served, store=self.store, build=self.build)

    def _unpack(self, served: str) -> Path:
        return unpack(self.archived[served], self.root / "unpacked" / served)

    def archive_all(self, names) -> None:
        """Archive each of ``names`` that can be; a failure is kept for that name's tests."""
        for name in names:
            try:
                self.archived[name]  # noqa: B018
            except Exception:  # noqa: BLE001, S110 - kept in self.archived.failed, raised in that model's tests
                pass

    def failure(self, served: str) -> Exception | None:
        for failed in (self.exported.failed, self.archived.failed, self.unpacked.failed, self.refused):
            if served in failed:
                return failed[served]
        return None


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
def artifacts(tmp_path_factory) -> Artifacts:
    return Artifacts(tmp_path_factory.mktemp("artifacts"))


@pytest.fixture(autouse=True)
def _model_failed_earlier(request, artifacts):
    """A test of a model (parameter ``name``, ``model`` or ``served``) whose artifacts failed earlier
    errors with that failure, instead of meeting its absence (a 404, a missing file) later."""
    params = getattr(getattr(request.node, "callspec", None), "params", {})
    for served in (v for k, v in params.items() if k in ("name", "model", "served") and v in MODEL_OF):
        if error := artifacts.failure(served):
            raise ModelFailed(f"{served}: failed earlier in this session: {error!r}") from error


@pytest.fixture(scope="session")
def build_dir(artifacts) -> Path:
    """build/<served name>/ of every served name (each model in each format), exported on first use."""
    return lazy_dir(artifacts.build, artifacts.exported)


@pytest.fixture(scope="session")
def model_store(artifacts) -> Path:
    """A model store with each model's archive in its primary format (every other format on first
    use as ``model_store / "<served>.mar"``); a model that fails is left out, its tests fail."""
    artifacts.archive_all(MODELS)
    return lazy_dir(artifacts.store, artifacts.archived, ".mar")


@pytest.fixture(scope="session")
def unpacked(artifacts) -> dict[str, Path]:
    """Each archive unzipped, as a worker sees it: served name -> model folder (made on first use)."""
    return artifacts.unpacked


@pytest.fixture(scope="session")
def format_build_dir(build_dir) -> Path:
    """``build_dir`` (every format is there on first use). AOTInductor compiles C++: about a minute."""
    return build_dir


@pytest.fixture(scope="session")
def format_store(model_store, artifacts) -> Path:
    """``model_store`` plus the archive of every other format (``digits_onnx.mar``, ...)."""
    artifacts.archive_all(served for *_, served in OTHER_FORMATS)
    return model_store


@pytest.fixture(scope="session")
def format_unpacked(unpacked) -> dict[str, Path]:
    """Every served name (each model in each of its formats) -> its unpacked archive."""
    return unpacked


@pytest.fixture(scope="session")
def handlers(unpacked) -> dict:
    """Every served name's handler initialized on its unpacked archive, as a worker holds it (on first use)."""
    from tests.support import load_handlers

    return Lazy(lambda served: load_handlers({served: unpacked[served]}, {served: MODEL_OF[served]})[served])
