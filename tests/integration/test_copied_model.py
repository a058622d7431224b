"""Nothing outside a model folder names a model (issue #9): a copy of an existing folder under a new
name, alone in a temporary models directory (KIT_MODELS_DIR), goes through the model-driven tests
unchanged: export and archive, the handler in process, serving over REST and v2, bad input, and
our KServe runtime on its repository. They run in a pytest of their own, which finds the models the
way every test does (``export.paths.model_names()``), so only the copy; no test file is edited.

The copy is of the model with the smallest inputs (the quickest to export and serve).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from export.paths import ROOT
from export.spec import load_spec
from tests.conftest import MODELS

COPY = "copied"  # a name no code or test knows, and not a prefix or suffix of another model's
# The model-parametrized tests of each path; -k keeps the tests whose id names the copy.
SUITE = [
    "tests/unit/test_export.py",  # export: the artifact against the reference, the manifest, the archive
    "tests/unit/test_handlers.py",  # the handler in process: samples, expected answers, batches, bad input
    "tests/integration/test_serving.py",  # served: REST, multipart, expected answers
    "tests/integration/test_oip_served.py",  # v2
    "tests/integration/test_bad_input.py",  # 4xx with a JSON body, the worker keeps serving
    "tests/integration/test_kserve_runtime.py",  # `make kserve`'s repository, run by our runtime
]
TIMEOUT = 1200  # s: its own exports and three TorchServe starts on 2 busy cores


def smallest() -> str:
    """The model whose inputs hold the fewest elements (so the copy's own export and serving are quick)."""
    return min(MODELS, key=lambda m: sum(s.max_elements(1 << 30) for s in load_spec(m).inputs))


def test_a_copied_model_folder_passes_the_model_driven_tests(tmp_path):
    source = load_spec(smallest()).folder
    models = tmp_path / "models"
    shutil.copytree(source, models / COPY, ignore=shutil.ignore_patterns("__pycache__"))
    spec = models / COPY / "spec.yaml"
    spec.write_text(re.sub(r"^name: .*$", f"name: {COPY}", spec.read_text(), count=1, flags=re.M))

    command = [sys.executable, "-m", "pytest", *SUITE, "-k", COPY, "-v", "-p", "no:cacheprovider"]
    command += ["--basetemp", str(tmp_path / "pytest")]
    env = os.environ | {"KIT_MODELS_DIR": str(models)}
    run = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    outcomes = re.findall(r"^(tests/\S+)::(\S+) (PASSED|FAILED|ERROR|SKIPPED)", run.stdout, flags=re.M)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    passed = {(path, test) for path, test, outcome in outcomes if outcome == "PASSED" and COPY in test}
    print(f"\n{len(passed)} tests passed on the copy of {source.name} (as {COPY!r})")
    assert {path for path, _ in passed} == set(SUITE), sorted(passed)  # every path ran on the copy
    assert all(COPY in test for _, test, _ in outcomes), "a test ran on a model other than the copy"
