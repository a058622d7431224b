"""The benchmark runs end to end on a handful of requests: report written, answers right, no errors.

No timing assertions: `make bench` measures; this only proves that it can.
"""

from __future__ import annotations

import json

from bench.__main__ import main as bench_main
from tests.conftest import MODELS


def test_bench_writes_a_report_with_every_point_and_no_errors(model_store, tmp_path):
    out = tmp_path / "results"
    args = ["--models", *MODELS, "--model-store", str(model_store), "--out", str(out), "--no-plot"]
    args += ["--concurrency", "1", "4", "--duration", "1", "--warmup", "0", "--repeats", "1"]
    args += ["--inprocess-batches", "1", "--inprocess-seconds", "0.2"]
    assert bench_main(args) == 0

    raw = json.loads((out / "raw.json").read_text())
    report = (out / "report.md").read_text()
    assert "## Targets" in report
    for name in MODELS:
        model = raw["models"][name]
        assert f"## {name}" in report
        # Before any load, every sample got the in-process answer from both servers.
        assert model["wrong_answers"] == {"torchserve": [], "flask": []}, model["wrong_answers"]
        for system in ("torchserve", "flask"):
            for concurrency in ("1", "4"):
                (point,) = model["runs"][system][concurrency]
                assert point["requests"] > 0, (name, system, concurrency)
                assert point["error_count"] == 0, (name, system, concurrency, point["errors"])
        assert all(b["items_per_s"] > 0 for b in model["inprocess"]["batches"])
    assert raw["memory"]["frontend_mb"] > 0
