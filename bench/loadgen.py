"""The load generator: Debian's ``wrk``, one thread, N keep-alive connections (closed loop).

Each connection sends the next request as soon as the previous answer arrives, so N is the number
of requests in flight ("concurrency N"). wrk costs a few microseconds of CPU per request, which
matters when client and server share two cores; its CPU time is reported with every run. The
inference key reaches wrk's script through its environment (BENCH_TOKEN), not its command line,
which any user can read in ``ps``.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
from pathlib import Path

from client.load import LoadResult
from export.samples import Sample

SCRIPT = Path(__file__).with_name("requests.lua")


class LoadGenError(RuntimeError):
    """wrk is missing, failed, or printed no result."""


def wrk_binary() -> str:
    """Path of wrk, or a LoadGenError saying how to get it."""
    path = shutil.which("wrk")
    if not path:
        raise LoadGenError("wrk not found: `make bench` installs it (apt-get install wrk)")
    return path


def run_load(
    url: str, samples: list[Sample], concurrency: int, seconds: int, token: str | None = None, timeout: int = 30
) -> LoadResult:
    """POST ``samples`` in turn to ``url`` from ``concurrency`` connections for ``seconds``.

    Raises:
        LoadGenError: wrk failed or printed no result line.
    """
    command = [wrk_binary(), "-t1", f"-c{concurrency}", f"-d{max(1, int(seconds))}s", f"--timeout={timeout}s"]
    command += ["-s", str(SCRIPT), url, "--"]
    for sample in samples:
        command += [str(sample.path), sample.content_type]
    env = {k: v for k, v in os.environ.items() if k != "BENCH_TOKEN"} | ({"BENCH_TOKEN": token} if token else {})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + timeout + 30, env=env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in done.stdout.splitlines() if x.startswith("BENCH_JSON ")), None)
    if done.returncode != 0 or line is None:
        raise LoadGenError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return LoadResult(
        concurrency=concurrency,
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        errors=raw["errors"],  # connect, read, write, status (non-2xx answers), timeout
        latency_ms={k: round(v / 1000, 3) for k, v in raw["latency_us"].items()},
        cpu_us_per_request=round(cpu * 1e6 / max(1, raw["requests"]), 1),
    )
