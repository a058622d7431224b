"""Export: parity with the eager model, the manifest, and refusing what cannot be trusted."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile

import pytest
import torch
import yaml

from export.archive import ArchiveError, check_archive
from export.build import export_model
from export.formats import to_torchscript
from export.spec import load_spec
from export.verify import Case, ExportError, call, parity_cases, verify_parity
from handlers.artifact import load_artifact, read_manifest
from handlers.errors import ArtifactMismatch
from handlers.schema import InputSpec
from tests.conftest import MODELS
from tests.support import primary_format, random_inputs, reference_model, tolerance


def sample_files(name: str) -> list[str]:
    """The sample files of a model's folder, read from its spec.yaml's globs here (not by export)."""
    folder = load_spec(name).folder
    raw = yaml.safe_load((folder / "spec.yaml").read_text())
    globs = [e if isinstance(e, str) else e["path"] for e in raw["samples"]]
    found = {str(p.relative_to(folder)) for g in globs for p in folder.glob(g) if p.name != "expected.json"}
    assert found, f"{name}: no sample files"
    return sorted(found)


@pytest.mark.parametrize("name", MODELS)
def test_manifest_records_what_was_verified(build_dir, name):
    """Checked against the spec file and the artifact themselves, not against what export assigned."""
    manifest = read_manifest(build_dir / name)
    raw = yaml.safe_load((load_spec(name).folder / "spec.yaml").read_text())
    artifact = (build_dir / name / manifest["artifact"]).read_bytes()
    assert manifest["sha256"] == hashlib.sha256(artifact).hexdigest()
    declared = raw.get("inputs") or [raw["input"]]
    assert [(i["name"], i["dtype"], i["shape"]) for i in manifest["inputs"]] == [
        (i["name"], i["dtype"], i["shape"]) for i in declared
    ]
    assert manifest["format"] == primary_format(name)
    if raw.get("source", "model.py") == "model.py":
        assert manifest["method"] == raw.get("method", "trace")
    assert manifest["versions"]["torch"] == torch.__version__
    assert manifest["batching"] == raw.get("batching", True) and manifest["reset"] == raw.get("reset")
    assert manifest["call_constants"] == ({} if raw.get("method", "trace") == "trace" else raw.get("constants", {}))
    assert manifest["reference"]["kind"] == (
        "model.py build()" if raw.get("source", "model.py") == "model.py" else "imported file"
    )
    report = manifest["verification"]
    assert report["max_abs_error"] <= raw.get("tolerance", {"atol": 1e-5})["atol"]
    labels = [c["input"] for c in report["checked"]]
    # every sample alone, all together, and every extra size the spec asks for
    assert all(s in labels for s in sample_files(name))
    for dim, sizes in raw.get("verify_sizes", {}).items():
        assert all(f"the samples with {dim}={size}" in labels for size in sizes)


@pytest.mark.parametrize("name", MODELS)
def test_artifact_matches_the_reference_on_other_batch_sizes(build_dir, name):
    artifact = load_artifact(build_dir / name, read_manifest(build_dir / name))
    reference, tol, reset = reference_model(name), tolerance(name), load_spec(name).reset
    x = random_inputs(name)  # every dimension at its maximum
    first3 = tuple(t[:3] for t in x)

    def called(model, inputs) -> tuple:  # one tensor or several, from a cleared state
        if reset:
            getattr(model, reset)()
        got = model(*inputs)
        return tuple(got) if isinstance(got, (tuple, list)) else (got,)

    with torch.inference_mode():
        for inputs in (first3, x):
            want = called(reference, inputs)
            torch.testing.assert_close(called(artifact, inputs), want, atol=tol["atol"], rtol=tol["rtol"])


class BranchOnSign(torch.nn.Module):
    """Input-dependent control flow: a trace freezes the branch its example input took."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() > 0):
            return x * 2
        return -x


def test_trace_that_diverges_is_rejected_and_points_to_script():
    positive, negative = torch.ones(1, 4), -torch.ones(1, 4)
    cases = [Case("positive", (positive,)), Case("negative", (negative,))]
    wants = [call(BranchOnSign(), c.inputs) for c in cases]
    tolerance = {"atol": 1e-5, "rtol": 1e-5}
    traced = to_torchscript(BranchOnSign(), "trace", (positive,))
    with pytest.raises(ExportError, match=r"toy: on negative .* differs from the reference .*method: script"):
        verify_parity("toy", traced, cases, wants, tolerance, hint=" set `method: script`")
    scripted = to_torchscript(BranchOnSign(), "script", (positive,))
    assert verify_parity("toy", scripted, cases, wants, tolerance)["max_abs_error"] == 0


SCRIPTED = [m for m in MODELS if not load_spec(m).imported and load_spec(m).method == "script"]


@pytest.mark.filterwarnings("ignore::torch.jit.TracerWarning")
@pytest.mark.parametrize("name", SCRIPTED)
def test_a_scripted_model_traced_instead_is_rejected(tmp_path, name):
    """A model.py that says `method: script` has data-dependent control flow (the sensor autoencoder pads
    windows whose length is not a multiple of 4): traced, its verification at other sizes fails the build."""
    spec = load_spec(name)
    spec.method = "trace"
    with pytest.raises(ExportError, match=rf"{name}: .*method: script"):
        export_model(spec, tmp_path / name)
    assert not (tmp_path / name / "manifest.json").exists()


def test_parity_cases_cover_each_sample_the_batch_and_extra_sizes():
    samples = [Case("a", (torch.zeros(1, 3),)), Case("b", (torch.ones(2, 3),))]
    inputs = [InputSpec("x", "float32", ("batch", 3), {})]
    join = lambda requests: (torch.cat([r[0] for r in requests]),)  # noqa: E731
    cases = parity_cases(samples, inputs, {"batch": [1, 7]}, join)
    assert [c.label for c in cases] == [
        "a",
        "b",
        "all 2 samples as one batch",
        "the samples with batch=1",
        "the samples with batch=7",
    ]
    assert cases[-1].inputs[0].shape == (7, 3) and cases[-1].inputs[0][3].sum() == 0  # cycled real rows


def test_tampered_artifact_is_refused(build_dir, tmp_path):
    folder = tmp_path / MODELS[0]
    shutil.copytree(build_dir / MODELS[0], folder)
    manifest = read_manifest(folder)
    with open(folder / manifest["artifact"], "ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactMismatch, match="refusing to serve an unverified model"):
        load_artifact(folder, manifest)


def test_archive_check_catches_a_sha_mismatch(model_store, tmp_path):
    good = model_store / f"{MODELS[0]}.mar"
    assert check_archive(good)["name"] == MODELS[0]
    bad = tmp_path / good.name
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename == "manifest.json":
                data = json.dumps(json.loads(data) | {"sha256": "0" * 64}).encode()
            dst.writestr(item, data)
    with pytest.raises(ArchiveError, match="does not match the manifest"):
        check_archive(bad)
