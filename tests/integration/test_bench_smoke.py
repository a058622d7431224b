"""The benchmark runs end to end on a handful of requests: report written, answers right, no errors.

No timing assertions: `make bench` measures; this only proves that it can. A 1 s warm-up per point:
on a busy machine the first calls of a JIT-compiled model at new shapes can take a second. Every
model runs on every corpus its folder offers (bench/*.json, else its samples), a few bodies checked.
"""

from __future__ import annotations

import json

from bench.__main__ import main as bench_main
from bench.payloads import corpora
from export.spec import load_spec
from tests.conftest import MODELS


def test_bench_writes_a_report_with_every_point_and_no_errors(model_store, tmp_path):
    out = tmp_path / "results"
    args = ["--models", *MODELS, "--model-store", str(model_store), "--out", str(out), "--no-plot"]
    args += ["--concurrency", "1", "4", "--duration", "1", "--warmup", "1", "--repeats", "1"]
    args += ["--inprocess-batches", "1", "--inprocess-seconds", "0.2", "--inprocess-bodies", "4", "--checked", "4"]
    assert bench_main(args) == 0

    raw = json.loads((out / "raw.json").read_text())
    report = (out / "report.md").read_text()
    assert "## Targets" in report and "## Overview" in report
    for name in MODELS:
        for corpus in corpora(name):
            workload = raw["models"][f"{name}/{corpus}"]
            assert f"## {name}/{corpus}" in report
            # Before any load, the first bodies got the in-process answer from both servers.
            assert len(workload["inprocess"]["answers"]) == min(4, workload["inprocess"]["bodies"])
            # A corpus that names a baseline has the archive served under it too, as a third system.
            corpus_file = load_spec(name).folder / "bench" / f"{corpus}.json"
            named = corpus_file.exists() and "baseline" in json.loads(corpus_file.read_text())
            systems = ["torchserve", "flask"] + (["baseline"] if named else [])
            assert sorted(workload["runs"]) == sorted(systems), (name, corpus, list(workload["runs"]))
            assert workload["wrong_answers"] == dict.fromkeys(systems, []), workload["wrong_answers"]
            for system in systems:
                points = [workload["runs"][system][c] for c in ("1", "4")]
                assert all(len(p) == 1 and p[0]["error_count"] == 0 for p in points), (name, corpus, system, points)
                # Not a speed check (a 1 s point on a busy machine may finish no request at c=1):
                # a system that answered nothing at either concurrency is broken.
                assert sum(p[0]["requests"] for p in points) > 0, (name, corpus, system)
            assert all(b["items_per_s"] > 0 for b in workload["inprocess"]["batches"])
    assert raw["memory"]["frontend_mb"] > 0
