"""The three artifact formats: parity at export, the same handler answers from each, every batch
size up to the configured one, and the runtime settings each loader chooses."""

from __future__ import annotations

import json

import pytest
import torch
import yaml

from export.build import export_model
from export.paths import parse_served_name, served_name
from export.spec import load_spec, requested
from export.verify import ExportError
from handlers.artifact import ArtifactIncompatible, load_artifact, open_artifact, read_manifest, sha256_of
from handlers.base import pad_and_cat
from handlers.schema import InputSpec
from tests.conftest import MODELS, OTHER_FORMATS, SERVED
from tests.support import assert_same_answer, primary_format, run_handler, samples, tolerance

SUFFIXES = {"torchscript": ".pt", "onnx": ".onnx", "aoti": ".pt2", "exported": ".pt2"}


@pytest.mark.parametrize(("name", "fmt", "served"), OTHER_FORMATS, ids=[s for *_, s in OTHER_FORMATS])
def test_manifest_records_format_runtime_and_parity(format_build_dir, name, fmt, served):
    manifest = read_manifest(format_build_dir / served)
    spec = load_spec(name)
    assert (manifest["name"], manifest["format"]) == (name, fmt)
    assert manifest["artifact"] == f"{name}{SUFFIXES[fmt]}"
    assert manifest["sha256"] == sha256_of(format_build_dir / served / manifest["artifact"])
    assert [InputSpec.from_dict(e) for e in manifest["inputs"]] == spec.inputs
    assert manifest["export_seconds"] > 0  # made from the source, never the imported file copied
    runtime = manifest["runtime"]
    if fmt == "onnx":
        assert runtime["opset"] >= 18
    elif fmt == "aoti":
        assert runtime["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    report = manifest["verification"]
    labels = [c["input"] for c in report["checked"]]
    assert (
        all(s["path"] in labels for s in manifest["samples"])
        and f"all {len(manifest['samples'])} samples as one batch" in labels
    )
    assert report["max_abs_error"] == max(c["max_abs_error"] for c in report["checked"]) < 1e-4
    # torch.export fixes the spec's bounds into the graph: sizes outside them are skipped, and said so
    for dim, sizes in spec.verify_sizes.items():
        for size in sizes:
            label = f"the samples with {dim}={size}"
            low, high = next(e.bounds(dim) for e in spec.inputs if dim in e.dims)
            inside = low <= size <= (high or size)
            assert (label in labels) == inside, label
            assert any(s["input"] == label for s in report["skipped"]) == (not inside), label


@pytest.mark.parametrize("name", MODELS)
def test_every_format_answers_like_the_primary_one(handlers, format_unpacked, name):
    """In process, each sample gets the same answer from every format (within the export tolerance)."""
    for sample in samples(name):
        body = [(sample.raw, sample.content_type)]
        [(status, want)] = run_handler(handlers[name], format_unpacked[name], body)
        assert status == 200, want
        for other, _, served in SERVED:
            if other == name and served != name:
                [(status, got)] = run_handler(handlers[served], format_unpacked[served], body)
                assert status == 200, got
                assert_same_answer(got, want, tolerance(name), f"{served} {sample.path.name}")


@pytest.mark.parametrize(("name", "fmt", "served"), SERVED, ids=[s for *_, s in SERVED])
def test_every_batch_size_up_to_the_configured_one(handlers, format_unpacked, name, fmt, served):
    """Batches of 1..batchSize requests (the samples in turn) answer each request as it is answered alone."""
    config = yaml.safe_load((format_unpacked[served] / "model-config.yaml").read_text())
    bodies = [(s.raw, s.content_type) for s in samples(name)]
    alone = [run_handler(handlers[served], format_unpacked[served], [body])[0] for body in bodies]
    for size in range(1, config["batchSize"] + 1):
        picks = [i % len(bodies) for i in range(size)]
        answers = run_handler(handlers[served], format_unpacked[served], [bodies[i] for i in picks])
        for i, (status, answer) in zip(picks, answers, strict=True):
            assert status == 200, answer
            assert_same_answer(
                answer, alone[i][1], tolerance(name), f"{served} batch of {size}, {samples(name)[i].path.name}"
            )


def largest_request(handler, folder, name: str) -> bytes:
    """A JSON request with the most instances the model takes per request (its batch bound): a JSON
    sample's value repeated (each named input, or under its own key or its plural), whichever the
    handler answers as a batch."""
    most = handler.max_instances()
    for sample in samples(name):
        doc = json.loads(sample.raw) if sample.content_type == "application/json" else None
        if isinstance(doc, dict) and isinstance(doc.get("inputs"), dict):  # the generic handler's named inputs
            body = json.dumps({"inputs": {k: (v[:1] * most)[:most] for k, v in doc["inputs"].items()}}).encode()
            [(status, answer)] = run_handler(handler, folder, [(body, "application/json")])
            if status == 200 and isinstance(answer, list) and len(answer) == most:
                return body
        for key, value in doc.items() if isinstance(doc, dict) else ():
            one = value[:1] if isinstance(value, list) and key.endswith("s") else [value]
            for candidate in (f"{key}s", key):
                body = json.dumps({candidate: (one * most)[:most]}).encode()
                [(status, answer)] = run_handler(handler, folder, [(body, "application/json")])
                if status == 200 and isinstance(answer, list) and len(answer) == most:
                    return body
    pytest.skip(f"{name}: no JSON sample to repeat {most} times")


@pytest.mark.parametrize(("name", "fmt", "served"), SERVED, ids=[s for *_, s in SERVED])
def test_a_full_batch_of_the_largest_requests(handlers, format_unpacked, name, fmt, served):
    """batchSize requests of the most instances each: more rows than any artifact was verified on,
    so the base runs them in chunks of the verified maximum; every answer equals the single one."""
    config = yaml.safe_load((format_unpacked[served] / "model-config.yaml").read_text())
    body = (largest_request(handlers[served], format_unpacked[served], name), "application/json")
    [(status, alone)] = run_handler(handlers[served], format_unpacked[served], [body])
    assert status == 200 and len(alone) == handlers[served].max_instances(), alone
    answers = run_handler(handlers[served], format_unpacked[served], [body] * config["batchSize"])
    for status, answer in answers:
        assert status == 200
        assert_same_answer(answer, alone, tolerance(name), served)


ONNX = [s for s in OTHER_FORMATS if s[1] == "onnx"]
AOTI = [s for s in OTHER_FORMATS if s[1] == "aoti"]


@pytest.mark.parametrize(("name", "fmt", "served"), ONNX[:1], ids=[s for *_, s in ONNX[:1]])
def test_onnx_session_takes_the_handler_threads_and_full_graph_optimisation(format_build_dir, name, fmt, served):
    import onnxruntime as ort

    folder = format_build_dir / served
    model = load_artifact(folder, read_manifest(folder), threads=3)
    options = model.session.get_session_options()
    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert [i.name for i in model.session.get_inputs()] == [e.name for e in load_spec(name).inputs]


@pytest.mark.parametrize(("name", "fmt", "served"), AOTI[:1], ids=[s for *_, s in AOTI[:1]])
def test_aoti_package_refuses_a_cpu_without_its_instructions(format_build_dir, name, fmt, served):
    folder = format_build_dir / served
    manifest = read_manifest(folder)
    built_for = manifest | {"runtime": {"cpu_capability": "SVE256"}}  # compiled for another CPU family
    with pytest.raises(ArtifactIncompatible, match="compiled for SVE256 CPUs.*FORMAT=aoti"):
        open_artifact(folder / manifest["artifact"], built_for)


def test_a_format_the_spec_does_not_list_is_refused(tmp_path):
    name = MODELS[0]
    spec = load_spec(name)
    spec.formats = ["torchscript"]
    with pytest.raises(ExportError, match=rf"{name}: spec.yaml lists formats \['torchscript'\]; add onnx"):
        export_model(spec, tmp_path / f"{name}_onnx", "onnx")
    assert not (tmp_path / f"{name}_onnx" / "manifest.json").exists()


@pytest.mark.parametrize("name", MODELS)
def test_served_names_and_format_selection(name):
    assert served_name(name) == name and served_name(name, "aoti") == f"{name}_aoti"
    assert parse_served_name(f"{name}_onnx") == (name, "onnx")
    assert parse_served_name(name) == (name, primary_format(name))
    assert requested([name], "all") == [(name, f) for f in load_spec(name).formats]
    assert requested([f"{name}_aoti", name], "onnx") == [(name, "aoti"), (name, "onnx")]


def test_requests_of_different_lengths_are_padded_into_one_batch():
    a, b = torch.tensor([[1, 2, 3]]), torch.tensor([[4], [5]])
    assert pad_and_cat([a, b], 0).tolist() == [[1, 2, 3], [4, 0, 0], [5, 0, 0]]
    same = [torch.ones(1, 2), torch.zeros(2, 2)]
    assert torch.equal(pad_and_cat(same), torch.cat(same)) and pad_and_cat([a]) is a
