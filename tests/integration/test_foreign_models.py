"""Any model folder passes the model-driven suite (issue 17): in a copy of the project, model files no
one here wrote (tests/foreign_models.py: an ONNX image model with ``?`` and symbolic dimensions and two
outputs, a stateful TorchScript file with a ``reset_state`` method (so ``batching: false``), and a
``.pt2``) are scaffolded with ``make new-model NAME=x FROM=file`` as a user would, the only edit being
the values TorchScript does not record. The model-driven tests then run on them in a pytest of their
own, pointed at a models directory that holds only them (KIT_MODELS_DIR): they find models the way
every test does (``export.paths.model_names()``), and no test file is edited.

One TorchServe serves them all: the suite is the model-driven files whose integration tests share the
session's server; the fuzz suite runs FUZZ_EXAMPLES per model and path (every path still checked).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

from tests.foreign_models import CHOOSE, make_all
from tests.support import copy_project

SUITE = [
    "tests/unit/test_export.py",  # export: the artifact against the file run directly, the manifest
    "tests/unit/test_handlers.py",  # the handler in process against the model run directly, expected.json
    "tests/unit/test_batching.py",  # length groups, bounds
    "tests/unit/test_formats_handlers.py",  # every format a spec lists
    "tests/unit/test_fuzz.py",  # hostile bodies up to max_request_size, on every path
    "tests/unit/test_fuzz_corpus.py",
    "tests/integration/test_serving.py",  # served over REST and multipart
    "tests/integration/test_oip_served.py",  # v2
    "tests/integration/test_bad_input.py",  # 4xx with a JSON body, the worker keeps serving
    "tests/integration/test_mixed_batches.py",
    "tests/integration/test_hostile_live.py",
    "tests/integration/test_formats_served.py",  # each served name registered once
]
# Not here: files that start servers of their own (test_kserve_runtime: a runtime per model, ~100 s each;
# test_bench_smoke: TorchServe and Flask; restarts, scaling, keys, health probes): they test the kit.
FUZZ_EXAMPLES = 15
TIMEOUT = 1500  # s: three exports, their archives and one TorchServe on 2 busy cores


def make(project, *args: str) -> str:
    done = subprocess.run(["make", *args], cwd=project, capture_output=True, text=True, timeout=600)
    out = done.stdout + done.stderr
    assert done.returncode == 0 and "Traceback" not in out, f"make {' '.join(args)}:\n{out[-3000:]}"
    return out


def test_foreign_models_pass_the_model_driven_suite(tmp_path):
    started = time.monotonic()
    project = copy_project(tmp_path / "project")
    for name, path in make_all(tmp_path / "files").items():
        make(project, "new-model", f"NAME={name}", f"FROM={path}")
        if CHOOSE.get(name):  # what the file does not say: the user's one edit, then complete the folder
            spec = project / "models" / name / "spec.yaml"
            text = spec.read_text()
            for old, new in CHOOSE[name].items():
                text = text.replace(old, new)
            spec.write_text(text)
            make(project, "new-model", f"NAME={name}")
        assert "CHOOSE" not in make(project, "new-model", f"NAME={name}")  # nothing left to warn about
    status = subprocess.run(["git", "status", "--porcelain"], cwd=project, capture_output=True, text=True).stdout
    changed = [line[3:] for line in status.splitlines()]
    assert changed and all(re.match(r"models/(vision|counter|scaler)/", path) for path in changed), changed

    command = [sys.executable, "-m", "pytest", *SUITE, "-v", "-p", "no:cacheprovider"]
    command += ["--basetemp", str(tmp_path / "pytest")]
    env = os.environ | {"KIT_MODELS_DIR": str(project / "models"), "KIT_FUZZ_EXAMPLES": str(FUZZ_EXAMPLES)}
    run = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    outcomes = re.findall(r"^(tests/\S+)::(\S+) (PASSED|FAILED|ERROR|SKIPPED)", run.stdout, flags=re.M)
    print(f"\nforeign models: {len(outcomes)} tests in {time.monotonic() - started:.0f} s")
    failures = run.stdout[max(run.stdout.find("= FAILURES ="), 0) :]
    assert run.returncode == 0, failures[:6000] + "\n...\n" + run.stdout[-3000:] + run.stderr[-1000:]
    passed = [(path, test) for path, test, outcome in outcomes if outcome == "PASSED"]
    for name in ("vision", "counter", "scaler"):  # each model went through export, handler and server
        ran = {path for path, test in passed if name in test}
        assert {"tests/unit/test_export.py", "tests/unit/test_handlers.py", "tests/integration/test_serving.py"} <= ran
    assert {path for path, _ in passed} == set(SUITE), sorted({p for p, _ in outcomes})  # every file ran
