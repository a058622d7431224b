"""What a load run measured: one result type for the benchmark's wrk runs (bench/loadgen.py) and the
reliability load that checks every answer (reliability/load.py)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


@dataclass
class LoadResult:
    """Counts, throughput and latency (ms) of one run, in all and per model."""

    concurrency: int
    requests: int
    seconds: float
    errors: dict[str, int]  # kind of failure -> count (wrk: connect, read, write, status, timeout)
    latency_ms: dict[str, float]  # p50, p90, p99, max (and min, mean where measured)
    latency_ms_by_model: dict[str, dict] = field(default_factory=dict)
    error_examples: list[str] = field(default_factory=list)  # a few failures, as text
    cpu_us_per_request: float | None = None  # the load generator's own CPU time (it shares the cores)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_dict(self) -> dict:
        return asdict(self) | {"rps": round(self.rps, 1), "error_count": self.error_count}


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def latency_summary(ms: list[float]) -> dict[str, float]:
    """How many, min, mean, p50, p90, p99 and max of latencies in ms (rounded to 0.01 ms)."""
    ordered = sorted(ms)
    if not ordered:
        return {"requests": 0}
    figures = {"min": ordered[0], "mean": sum(ordered) / len(ordered)}
    figures |= {f"p{q}": percentile(ordered, q) for q in (50, 90, 99)} | {"max": ordered[-1]}
    return {"requests": len(ordered)} | {k: round(v, 2) for k, v in figures.items()}
