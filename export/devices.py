"""What each device loads, and in which precision, verified: the manifest's ``runtime.devices``.

- TorchScript, ExportedProgram and ONNX: one file for every device. GPU workers compute in the spec's
  ``precision`` (fp16/bf16, by autocast) once export has checked the artifact in it against the fp32
  reference on every case, within ``precision_tolerance``: on a CUDA device when the export machine
  has one, else on the CPU (the CPU's own reduced-precision kernels). A model whose operators have
  no CPU kernel in that precision, on a machine without CUDA, is served in fp32, and the manifest
  says why. ONNX graphs are served as exported (fp32) on every device. A trace or torch.export records
  ``device=`` arguments as constants (a Hugging Face mask built on the input's device): such an artifact
  pins the CPU, and its CUDA twin is traced or exported again on CUDA where export has it; else GPU
  workers refuse it, saying why.
- AOTInductor: compiled code for one device. Besides the CPU package, a CUDA one (in the spec's
  precision) is built when the spec lists ``cuda`` in ``devices`` and this machine has CUDA; without
  it the manifest's ``runtime.missing_devices`` says why, and a GPU worker refuses to load it.
"""

from __future__ import annotations

import copy
import re
import warnings
from pathlib import Path

import torch

from export.formats import dynamic_shapes, exportable, to_torchscript
from export.sources import Source
from export.spec import ModelSpec
from export.verify import Case, ExportError, verify_parity
from handlers.artifact import Bound, open_artifact, sha256_of
from handlers.device import DTYPES, Placement, exact_fp32

ONNX_FP32 = "ONNX graphs are served as exported (fp32); the kit converts no graph to reduced precision"


class OnDevice:
    """An artifact called with host tensors, run on ``device``, its outputs back on the host."""

    def __init__(self, model, device: torch.device):
        self.model, self.placement = model, Placement(device, inputs=device)

    def __call__(self, *tensors: torch.Tensor):
        return self.placement.to_host(self.model(*self.placement.to_device(tensors)))

    def __getattr__(self, name: str):
        if name == "model":
            raise AttributeError(name)
        return getattr(self.model, name)  # its ``reset``


class Cast(torch.nn.Module):
    """A model whose weights are in ``dtype``: float inputs cast to it, its outputs back to float32
    (what AOTInductor compiles for a reduced-precision GPU package; the manifest's dtypes hold)."""

    def __init__(self, model: torch.nn.Module, dtype: torch.dtype):
        super().__init__()
        self.model, self.dtype = model, dtype

    def forward(self, *tensors: torch.Tensor):
        out = self.model(*(t.to(self.dtype) if t.is_floating_point() else t for t in tensors))
        outs = out if isinstance(out, (tuple, list)) else (out,)
        cast = tuple(o.float() if o.is_floating_point() else o for o in outs)
        return cast if isinstance(out, (tuple, list)) else cast[0]


def aoti_package(source: Source, spec: ModelSpec, example: tuple, path: Path, device: torch.device) -> None:
    """Compile an AOTInductor package for ``device`` in the spec's precision (fp32 in and out)."""
    dtype = DTYPES[spec.precision]
    exact_fp32()  # an fp32 package computes in fp32, not TF32
    model = source.model.module() if source.kind == "exported" else source.model
    model = Bound(model, spec.constants) if spec.constants and source.kind != "exported" else model
    module = Cast(copy.deepcopy(model).to(device=device, dtype=dtype), dtype).eval()
    inputs = tuple(t.to(device) for t in example)
    with torch.no_grad():
        program = torch.export.export(module, inputs, dynamic_shapes=(dynamic_shapes(spec),))
        torch._inductor.aoti_compile_and_package(program, package_path=str(path))


def cuda_device() -> torch.device | None:
    return torch.device("cuda", 0) if torch.cuda.is_available() else None


def device_runtime(
    spec: ModelSpec, fmt: str, source: Source, example: tuple, candidate: Path, manifest: dict, cases, wants
) -> tuple[dict, dict]:
    """The manifest's ``runtime`` additions (``devices``, maybe ``missing_devices``) and the precision
    verification record, for the artifact ``candidate`` (verified in fp32 already).

    Raises:
        ExportError: the reduced-precision artifact differs from the fp32 reference beyond
            ``precision_tolerance``, or the CUDA package fails to build or to reproduce it.
    """
    cpu = {"artifact": candidate.name, "sha256": sha256_of(candidate), "precision": "fp32"}
    runtime: dict = {"devices": {"cpu": cpu}}
    if fmt == "onnx":
        runtime["devices"]["cuda"] = cpu
        return runtime, {"declared": spec.precision, "cuda": "fp32", "why": ONNX_FP32}
    cuda = cuda_device()
    if fmt == "aoti":
        why = aoti_missing(spec, source, cuda)
        if why:
            runtime["missing_devices"] = {"cuda": why}
            return runtime, {"declared": spec.precision, "cuda": None, "why": why}
        package = candidate.with_name(f"{candidate.stem}.cuda{candidate.suffix}")
        try:
            aoti_package(source, spec, example, package, cuda)
        except Exception as err:  # torch's compilers raise anything: the gist, and the format still serves the CPU
            raise ExportError(
                f"{spec.name}: compiling the CUDA AOTInductor package failed ({type(err).__name__}: {err})"
            ) from err
        loaded = OnDevice(open_artifact(package, manifest, device=cuda), cuda)
        record = check(spec, loaded, cases, wants, cuda, compiled=True)
        runtime["devices"]["cuda"] = {
            "artifact": package.name,
            "sha256": sha256_of(package),
            "precision": spec.precision,
        }
        return runtime, record
    artifact, where = candidate, cuda or torch.device("cpu")
    if pinned := pins_cpu(candidate, fmt):
        if why := remake_missing(spec, fmt, source, cuda, pinned):
            runtime["missing_devices"] = {"cuda": why}
            return runtime, {"declared": spec.precision, "cuda": None, "why": why}
        artifact = candidate.with_name(f"{candidate.stem}.cuda{candidate.suffix}")
        remake_on(cuda, fmt, source, spec, example, artifact)
    elif spec.precision == "fp32":
        runtime["devices"]["cuda"] = cpu
        return runtime, {"declared": "fp32", "cuda": "fp32"}
    loaded = OnDevice(open_artifact(artifact, manifest, device=where, precision=spec.precision), where)
    try:
        record = check(spec, loaded, cases, wants, where)
    except ExportError as err:
        if where.type == "cuda" or err.__cause__ is None:
            raise  # a real difference (or a CUDA failure): the user decides
        why = f"{spec.precision} could not run on this machine's CPU ({type(err.__cause__).__name__}); no CUDA here"
        runtime["devices"]["cuda"] = cpu
        return runtime, {"declared": spec.precision, "cuda": "fp32", "why": f"{why}: fp32 is served"}
    runtime["devices"]["cuda"] = {"artifact": artifact.name, "sha256": sha256_of(artifact), "precision": spec.precision}
    return runtime, record


def pins_cpu(path: Path, fmt: str) -> str | None:
    """What in a TorchScript or ExportedProgram artifact fixes the CPU as a device (a trace records
    ``device=`` arguments as constants, e.g. a mask moved to the input's device); None: nothing."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            graph = str(torch.jit.load(str(path), map_location="cpu").inlined_graph)
        found = len(re.findall(r'prim::Constant\[value="cpu"\]', graph))
        return f"{found} device constant(s) in its graph" if found else None
    if fmt == "exported":
        nodes = [n for n in torch.export.load(str(path)).graph.nodes if n.kwargs.get("device") == torch.device("cpu")]
        return f"{len(nodes)} operation(s) such as {nodes[0].target}" if nodes else None
    return None


def remake_missing(spec: ModelSpec, fmt: str, source: Source, cuda: torch.device | None, pinned: str) -> str | None:
    """Why an artifact that pins the CPU gets no CUDA twin (None: it gets one, made on CUDA)."""
    why = f"the {fmt} artifact fixes the CPU as a device ({pinned}); its CUDA twin is made on CUDA"
    if "cuda" not in spec.devices:
        return f"{why} when spec.yaml `devices` lists cuda"
    if cuda is None:
        return f"{why}, and CUDA was not available at export (torch {torch.__version__})"
    if source.kind != "eager" or (fmt == "torchscript" and spec.method != "trace"):
        return f"{why} from model.py with `method: trace`"
    return None


def remake_on(device: torch.device, fmt: str, source: Source, spec: ModelSpec, example: tuple, path: Path) -> None:
    """Trace or torch.export the eager model again on ``device``, as the CPU artifact was made."""
    inputs = tuple(t.to(device) for t in example)
    if fmt == "torchscript":
        model = Bound(source.model, spec.constants) if spec.constants else source.model
        to_torchscript(copy.deepcopy(model).to(device), "trace", inputs).save(str(path))
        return
    module, shapes = exportable(source, spec)
    with torch.no_grad():
        torch.export.save(
            torch.export.export(copy.deepcopy(module).to(device), inputs, dynamic_shapes=shapes), str(path)
        )


def aoti_missing(spec: ModelSpec, source: Source, cuda: torch.device | None) -> str | None:
    """Why no CUDA AOTInductor package is built (None: it is)."""
    if "cuda" not in spec.devices:
        return "spec.yaml `devices` lists no cuda"
    if cuda is None:
        return f"CUDA was not available at export (torch {torch.__version__})"
    if source.kind == "exported" and spec.constants:
        return "an imported ExportedProgram with call-time constants is packaged for the CPU only"
    return None


def check(spec: ModelSpec, loaded, cases: list[Case], wants: list, where: torch.device, compiled: bool = False) -> dict:
    """Verify ``loaded`` on every case against the fp32 reference; the precision's own tolerance
    (the spec's ``tolerance`` for fp32)."""
    tolerance = spec.tolerance if spec.precision == "fp32" else spec.precision_tolerance
    hint = "" if spec.precision == "fp32" else ". Raise `precision_tolerance` in spec.yaml, or set `precision: fp32`"
    name = f"{spec.name} ({spec.precision} on {where})"
    report = verify_parity(name, loaded, cases, wants, tolerance, hint, spec.reset)
    how = "compiled" if compiled else "autocast"
    return {"declared": spec.precision, "cuda": spec.precision, "how": how, "verified_on": str(where)} | {
        "tolerance": tolerance,
        "max_abs_error": report["max_abs_error"],
        "checked": len(report["checked"]),
    }
