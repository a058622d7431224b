"""`make reliability`: run the reliability tests and the soak, then write docs/RELIABILITY.md from
what they recorded (statuses seen, recovery times, load numbers, security checks).

Usage: ``python -m reliability.report [--requests 5000] [--concurrency 16] [--no-soak]``.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

from export.paths import ROOT
from reliability.load import soak
from reliability.record import (
    ENV,
    BadInput,
    Fuzz,
    HostileLive,
    Load,
    MixedBatch,
    Outcome,
    Record,
    Restart,
    Security,
    Update,
    WorkerCrash,
    read_records,
)
from reliability.updates import measure

DOC = ROOT / "docs" / "RELIABILITY.md"
TESTS = [
    f"tests/{name}.py"
    for name in (
        "integration/test_bad_input",
        "integration/test_mixed_batches",
        "integration/test_worker_crash",
        "integration/test_restart",
        "integration/test_load",
        "integration/test_updates",
        "integration/test_security",
        "integration/test_hostile_live",
        "unit/test_fuzz",
    )
]
LIMITS = """\
## What TorchServe 0.12 decides, not this kit (observed, not fixed)

- Every HTTP method on `/predictions/<model>` reaches the model: a GET or DELETE without a body gets
  the handler's 400 "empty request body; POST the input ...", and a PUT with a valid body is answered
  200. 405 exists only on the management API (e.g. `POST /models/<model>`).
- A body over `max_request_size` gets 413 with an empty body (the frontend answers before any handler).
- A worker killed mid-batch fails that batch's requests with 500 or 507 "Worker died."; requests still queued
  wait for the replacement worker and succeed.
- An archive whose artifact fails the sha256 check: registration answers 500 "Failed to start workers",
  the name stays listed with 0 workers, its predictions get 503, and `model_log.log` holds the
  `ArtifactMismatch` message with both hashes. Unregister it after fixing the archive.
- `model_name` is not validated: a management-key holder can register `model_name=../x`, which then
  cannot be unregistered by name (the path splits on `/`) until the server restarts without snapshots.
  The management API is loopback-only and needs the management key.
- Scaling down (`PUT /models/<m>?min_worker=` below the current count) and unregistering end workers at
  once, whether or not they hold a batch: that batch fails with 500 "Worker died." or, depending on a race
  in `WorkerThread.shutdown`, is put back on the version's queue; when the version's last worker goes, what
  is put back waits on a queue no worker reads (no answer until the client's timeout). TorchServe shows a
  version's queue (`jobQueueStatus`) but not the batch in a worker. The kit's updates and scale-down
  (section 9) therefore switch traffic to a new version first and end only drained, idle workers; a request
  addressed to an old version by its number after it was parked gets 503.
- A synchronous registration or scale-up (`synchronous=true`, the default) waits for the workers to load on a
  Netty thread that inference connections share: requests on those connections wait as long (30 s client
  timeouts were seen while a version loaded under load). The kit's updates use `synchronous=false` and poll.
- A version's default can be switched (`PUT /models/<m>/<v>/set-default`) while both versions serve: requests
  queued before the switch are answered by the old version, later ones by the new one.
- A restart from a snapshot (`python -m client.server_cli restart`) restores the settings saved in the
  snapshot; edits to `config.properties` since are not read. `make serve` starts from
  `config.properties` with no models and writes a new, empty snapshot.
"""


def run_tests(record_file: Path) -> int:
    """Run the reliability tests with recording on (they record their own outcome); pytest's exit code."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
        cwd=ROOT,
        env=os.environ | {ENV: str(record_file)},
        capture_output=True,
        text=True,
        check=False,
    )
    print(done.stdout[-3000:], done.stderr[-2000:], sep="\n")
    return done.returncode


def outcome(records: list[Record], code: int) -> str:
    """``N passed, M failed ... (S s)`` from the tests' own Outcome record."""
    ran = [r for r in records if isinstance(r, Outcome)]
    if not ran:
        return f"no outcome recorded (pytest exited with {code})"
    o = ran[-1]
    counts = {"passed": o.passed, "failed": o.failed, "errors": o.errors, "skipped": o.skipped}
    return ", ".join(f"{n} {what}" for what, n in counts.items() if n) + f" ({o.seconds:.0f} s)"


def table(header: list[str], rows: list[list]) -> str:
    """A Markdown table."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def bad_input_section(records: list[BadInput]) -> str:
    models = list(dict.fromkeys(r.model for r in records))
    cases = list(dict.fromkeys(r.case for r in records))
    seen = {(r.case, r.model): f"{r.status} {r.type}".strip() for r in records}
    rows = [[case, *(seen.get((case, m), "") for m in models)] for case in cases]
    five = sum(1 for r in records if r.status >= 500)
    return (
        f"## 1. Bad input, per model\n\n{len(records)} requests; {five} answered 5xx. Each case is followed by a good "
        "request that must succeed on the same worker PIDs (no restart).\n\n" + table(["case", *models], rows)
    )


def mixed_section(records: list[MixedBatch]) -> str:
    rows = [[r.model, "; ".join(r.batches), " ".join(map(str, r.statuses))] for r in records]
    return (
        "## 2. Good and bad requests in one batch\n\nbatchSize 8, maxBatchDelay 5000 ms, 8 requests sent at once; "
        "the batch line is the worker's own log line.\n\n" + table(["model", "batches in model_log", "statuses"], rows)
    )


def crash_section(records: list[WorkerCrash]) -> str:
    rows = [
        [r.model, r.requests, f"{r.failed} ({', '.join(map(str, r.statuses)) or '-'})", r.recovery_s, r.bound_s]
        + [r.workers_after]
        for r in records
    ]
    header = ["model", "requests sent", "failed (status)", "answered again after SIGKILL (s)", "bound (s)", "workers"]
    return "## 3. A worker killed with SIGKILL under load (4 clients)\n\n" + table(header, rows)


def restart_section(records: list[Restart]) -> str:
    parts = []
    for r in records:
        rows = []
        for model, before in r.before.items():
            after = r.after.get(model, {"default": "missing", "versions": {}})
            for ver, (low, high, ready) in before["versions"].items():
                got = after["versions"].get(ver)
                shown = f"{got[0]}/{got[1]}/{got[2]}" if got else "missing"
                rows.append([model, ver, f"{before['default']} / {after['default']}", f"{low}/{high}/{ready}", shown])
        header = ["model", "version", "default before / after", "min/max/ready before", "after"]
        parts.append(
            f"Stop, then start from snapshot `{r.snapshot}`: {r.seconds} s until every worker was READY.\n\n"
            + table(header, rows)
        )
    return "## 4. Restart from the config snapshot\n\n" + "\n\n".join(parts)


def load_section(records: list[Load]) -> str:
    rows = []
    for r in records:
        b, a = r.rss_mb_before, r.rss_mb_after
        lat = r.latency_ms
        rows.append(
            [
                r.kind,
                r.requests,
                r.concurrency,
                r.error_count,
                r.rps,
                lat["p50"],
                lat["p99"],
                lat["max"],
                f"{b['frontend']} → {a['frontend']} ({a['frontend'] - b['frontend']:+.1f})",
                f"{b['workers']} → {a['workers']} ({a['workers'] - b['workers']:+.1f}), {a['worker_count']} workers",
            ]
        )
    header = "run|requests|concurrency|errors|req/s|p50 ms|p99 ms|max ms|frontend RSS MB|workers RSS MB".split("|")
    per_model = [
        [r.kind, model, lat["requests"], lat["p50"], lat["p90"], lat["p99"], lat["max"]]
        for r in records
        for model, lat in r.latency_ms_by_model.items()
    ]
    return (
        "## 5. Load on loopback (all models in turn, every sample, each answer checked)\n\n"
        + table(header, rows)
        + "\n\nPer model (one worker each; the slowest model's queue sets the tail of the whole run):\n\n"
        + table(["run", "model", "requests", "p50 ms", "p90 ms", "p99 ms", "max ms"], per_model)
    )


def security_section(records: list[Security]) -> str:
    rows = [[r.check, r.expected, r.seen] for r in records]
    return "## 6. Locked down\n\n" + table(["check", "expected", "seen"], rows)


def hostile_section(records: list[HostileLive]) -> str:
    rows = []
    for r in records:
        counts = {status: list(r.statuses.values()).count(status) for status in sorted(set(r.statuses.values()))}
        rows.append([r.model, r.route, r.cases, ", ".join(f"{n}x {status}" for status, n in counts.items())])
    return "## 7. Hostile requests on a live server\n\n" + table(["model", "route", "cases", "statuses"], rows)


def fuzz_section(records: list[Fuzz]) -> str:
    rows = [[r.model, r.path, r.examples, r.worst_cpu_ms, r.worst_wall_ms, r.peak_mb] for r in records]
    head = ["model", "path", "examples", "worst CPU ms in the handler", "worst ms with the model", "peak traced MB"]
    return (
        "## 8. Fuzzing in process (tests/unit/test_fuzz.py)\n\n"
        "Every answer a 2xx or a 4xx with a JSON error, valid JSON, batch-mates answered. This is the short "
        "budget of `make test`; `make fuzz` runs the long one and prints the same table.\n\n" + table(head, rows)
    )


def update_section(records: list[Update]) -> str:
    rows = [
        [r.kind, r.action, f"{r.old or ''} → {r.new or '(kept ' + str(r.versions_seen[0]) + ')'}", r.threads]
        + [r.requests, r.failed, r.seconds, r.drain_s if r.drain_s is not None else "-", r.workers_after or "-"]
        + [", ".join(map(str, r.switches_per_thread)), (r.error or "").replace("|", "/")[:160]]
        for r in records
    ]
    header = ["run", "update", "versions", "threads", "requests", "failed", "update s", "drain s", "workers after"]
    header += ["version changes per thread", "error (failing versions)"]
    return (
        "## 9. Updates under load (client/updates.py; README: Updates without downtime)\n\n"
        "Closed-loop threads on keep-alive connections send the model's samples while one update runs; every "
        "answer must be 200 and equal to the answer before any update. `update s` is the command's own time "
        "(registering and loading the new workers dominates); the phase lasts at least as long.\n\n"
        + table(header, rows)
    )


SECTIONS = [
    (BadInput, bad_input_section),
    (MixedBatch, mixed_section),
    (WorkerCrash, crash_section),
    (Restart, restart_section),
    (Load, load_section),
    (Security, security_section),
    (HostileLive, hostile_section),
    (Fuzz, fuzz_section),
    (Update, update_section),
]


def render(records: list[Record], tests: str) -> str:
    """The whole document."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    head = (
        "# Reliability record\n\n"
        f"Generated by `make reliability` on {stamp}: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"torch {version('torch')}, torchserve {version('torchserve')}. Reliability tests: {tests}. "
        "Regenerate with `make reliability`; the long load alone is `make soak`."
    )
    body = [fn([r for r in records if isinstance(r, kind)]) for kind, fn in SECTIONS]
    return "\n\n".join([head, *body, LIMITS])


def main(argv: list[str] | None = None) -> int:
    """Run everything, write docs/RELIABILITY.md; exit 1 if a test failed or the soak had errors."""
    parser = argparse.ArgumentParser(prog="python -m reliability.report", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000, help="soak requests (default: 5000)")
    parser.add_argument("--concurrency", type=int, default=16, help="soak concurrency (default: 16)")
    parser.add_argument("--no-soak", action="store_true", help="skip the long loads (default: run them)")
    parser.add_argument(
        "--update-model", default="digits", help="served name the long update run uses (default: digits)"
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        record_file = Path(tmp) / "record.jsonl"
        code = run_tests(record_file)
        records = read_records(record_file)
    soak_errors = 0
    if not args.no_soak:
        run = soak(args.requests, args.concurrency)
        records.append(Load(kind="soak (make soak)", **run))
        soak_errors = run["error_count"]
        phases = measure(args.update_model, 8, args.requests)
        records += [Update(kind="long (make reliability)", **p) for p in phases]
        soak_errors += sum(p["failed"] for p in phases)
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(render(records, outcome(records, code)) + "\n")
    print(f"wrote {DOC.relative_to(ROOT)}")
    return 1 if code or soak_errors else 0


if __name__ == "__main__":
    sys.exit(main())
