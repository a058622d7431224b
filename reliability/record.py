"""What the reliability tests saw, for docs/RELIABILITY.md, in a declared schema.

Tests call ``record(section, **fields)``; the fields must be those of the section's class below (a
wrong or missing field fails the test that wrote it). Nothing is written unless ``RELIABILITY_RECORD``
names a file (``make reliability`` sets it), so `make test` is unaffected. ``reliability.report``
reads the file back with ``read_records``.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

ENV = "RELIABILITY_RECORD"


@dataclass
class BadInput:
    """One bad request and what it was answered (tests/integration/test_bad_input.py)."""

    model: str
    case: str
    status: int
    type: str = ""


@dataclass
class MixedBatch:
    """Good and bad requests in one batch: the worker's batch log lines and each status."""

    model: str
    batches: list[str]
    statuses: list[int]


@dataclass
class WorkerCrash:
    """A worker killed under load: requests sent and failed, and when answers came back."""

    model: str
    requests: int
    failed: int
    statuses: list[int]
    recovery_s: float | None
    bound_s: float
    workers_after: int


@dataclass
class Restart:
    """Per model, its default version and per version (min, max, READY) workers before and after."""

    before: dict
    after: dict
    seconds: float
    snapshot: str


@dataclass
class Load:
    """A bounded load (``client.load.LoadResult.to_dict()``) with memory before and after."""

    kind: str
    concurrency: int
    requests: int
    seconds: float
    errors: dict[str, int]
    latency_ms: dict
    rps: float
    error_count: int
    rss_mb_before: dict
    rss_mb_after: dict
    latency_ms_by_model: dict = field(default_factory=dict)
    error_examples: list[str] = field(default_factory=list)
    cpu_us_per_request: float | None = None
    rss_mb_growth: dict | None = None


@dataclass
class Security:
    """One lock-down check: what must hold and what was seen."""

    check: str
    expected: str
    seen: str


@dataclass
class HostileLive:
    """The fuzz corpus and the issue's cases sent to a live server: per case, its status (never a 5xx)."""

    model: str
    route: str
    cases: int
    statuses: dict[str, int]


@dataclass
class Fuzz:
    """Generated and mutated bodies sent to one model's handler on one path (tests/unit/test_fuzz.py)."""

    model: str
    path: str
    examples: int
    worst_cpu_ms: float  # in the handler, outside the model call
    worst_wall_ms: float  # with the model call
    peak_mb: float  # traced (Python and numpy) memory


@dataclass
class Update:
    """One update under load (reliability/updates.py): requests answered while it ran, and how."""

    kind: str
    action: str
    threads: int
    requests: int
    failed: int
    seconds: float
    versions_seen: list[str]
    switches_per_thread: list[int]
    statuses: dict = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)
    drain_s: float | None = None
    error: str | None = None
    old: str | None = None  # the version serving before
    new: str | None = None  # the version serving after (None: the update failed)
    times: str = ""  # when the new version became the default and the old one was parked
    workers_after: int | None = None  # the default version's workers once the update was done


@dataclass
class Outcome:
    """How the reliability tests ended (written by tests/conftest.py at the end of the session)."""

    passed: int
    failed: int
    errors: int
    skipped: int
    seconds: float


SECTIONS = {
    "bad_input": BadInput,
    "mixed_batch": MixedBatch,
    "worker_crash": WorkerCrash,
    "restart": Restart,
    "load": Load,
    "security": Security,
    "hostile_live": HostileLive,
    "fuzz": Fuzz,
    "update": Update,
    "tests": Outcome,
}
Record = BadInput | MixedBatch | WorkerCrash | Restart | Load | Security | HostileLive | Fuzz | Update | Outcome


def record(section: str, **fields) -> Record:
    """Check one observation against its section's schema; append it to the record file, if one is set.

    Raises:
        TypeError: a field the section does not declare, or a missing one.
    """
    entry = SECTIONS[section](**fields)
    path = os.environ.get(ENV)
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"section": section, **asdict(entry)}, default=str) + "\n")
    return entry


def read_records(path: Path) -> list[Record]:
    """Every observation in a record file, in order, as its section's class."""
    if not Path(path).exists():
        return []
    entries = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            fields = json.loads(line)
            entries.append(SECTIONS[fields.pop("section")](**fields))
    return entries
