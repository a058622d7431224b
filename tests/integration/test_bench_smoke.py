"""The benchmark runs end to end on a handful of requests: report written, answers right, no errors.

No timing assertions: `make bench` measures; this only proves that it can, with TorchServe, the
LitServe peer (batching on: its collate path) and the Flask peer, for every model folder whatever
its primary format (TorchScript, ONNX, .pt2): the peers load it with its own runtime. A peer that
cannot serve a model is a skipped row with its reason printed, never a failure.
"""

from __future__ import annotations

import json

from bench.__main__ import main as bench_main
from bench.payloads import corpora
from export.spec import load_spec
from tests.conftest import MODELS

SYSTEMS = {"torchserve": "TorchServe", "litserve_batch": "LitServe, batching", "flask": "Flask (tutorial)"}


def test_bench_writes_a_report_with_every_point_and_no_errors(model_store, tmp_path, capsys):
    out = tmp_path / "results"
    args = ["--models", *MODELS, "--model-store", str(model_store), "--out", str(out), "--no-plot"]
    args += ["--systems", *SYSTEMS, "--concurrency", "1", "4", "--duration", "1", "--warmup", "1", "--repeats", "1"]
    args += ["--inprocess-batches", "1", "--inprocess-seconds", "0.2", "--inprocess-bodies", "4", "--checked", "4"]
    assert bench_main(args) == 0

    raw = json.loads((out / "raw.json").read_text())
    report = (out / "report.md").read_text()
    assert "## Targets" in report
    for name in MODELS:
        for corpus in corpora(name):
            workload = raw["workloads"][f"{name}/{corpus}"]
            assert f"## {name}/{corpus}" in report
            for label, reason in workload["skipped"].items():
                with capsys.disabled():
                    print(f"\n  skipped {label} for {name}: {reason}")
            # Before any load, the first bodies got the in-process answer from every system that ran.
            assert len(workload["inprocess"]["answers"]) == min(4, workload["inprocess"]["bodies"])
            ran = [label for label in SYSTEMS.values() if label not in workload["skipped"]]
            assert "TorchServe" in ran, workload["skipped"]
            # A corpus file that names a baseline has the archive served under it too (read from the file).
            corpus_file = load_spec(name).folder / "bench" / f"{corpus}.json"
            named = corpus_file.exists() and "baseline" in json.loads(corpus_file.read_text())
            assert any(k.startswith("baseline") for k in workload["runs"]) == named, list(workload["runs"])
            for label in ran:
                assert workload["wrong_answers"][label] == [], (name, corpus, label, workload["wrong_answers"])
                points = [workload["runs"][label][c] for c in ("1", "4")]
                assert all(len(p) == 1 and p[0]["error_count"] == 0 for p in points), (name, corpus, label, points)
                # Not a speed check (a 1 s point on a busy machine may finish no request at c=1):
                # a system that answered nothing at either concurrency is broken.
                assert sum(p[0]["requests"] for p in points) > 0, (name, corpus, label)
            assert all(b["items_per_s"] > 0 for b in workload["inprocess"]["batches"])
