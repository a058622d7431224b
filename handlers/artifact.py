"""The manifest an export writes, and loading the artifact it names.

Shared by ``export/`` (which writes manifests) and the handlers (which read them), so both agree
on one format. Nothing heavy happens at import time: each runtime (TorchScript, ONNX Runtime,
AOTInductor) is imported only by the loader of its own format.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from handlers.device import device_entry, with_precision
from handlers.errors import ArtifactMismatch

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.json"
# x86 vector instruction sets, weakest first: an AOTInductor package runs on its own or a later one.
CPU_CAPABILITIES = ("DEFAULT", "AVX2", "AVX512")


class ArtifactIncompatible(RuntimeError):
    """Raised at load time: this machine cannot run the artifact (e.g. an AOTInductor package
    compiled for vector instructions this CPU lacks). The model fails to load, with the fix."""


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict:
    """The manifest in ``folder`` (an export folder or an unpacked archive)."""
    return json.loads((Path(folder) / MANIFEST_FILE).read_text())


def _load_torchscript(path: Path, manifest: dict, threads: int, device: torch.device) -> Callable:
    return torch.jit.load(str(path), map_location=device).eval()


class OnnxModel:
    """An ONNX Runtime session called like a module: tensors in (in the manifest's input order, on
    any device: ONNX Runtime copies host arrays to its own), its outputs back as CPU tensors (one
    output bare). ``OnnxModel.plain(path)`` is a session with ONNX Runtime's defaults (export's
    reference for an imported graph); the loader makes the tuned one."""

    def __init__(self, session):
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]

    @classmethod
    def plain(cls, path: Path) -> OnnxModel:
        import onnxruntime as ort

        return cls(ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]))

    def __call__(self, *tensors: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        feeds = {n: t.detach().cpu().contiguous().numpy() for n, t in zip(self.input_names, tensors, strict=True)}
        outputs = tuple(torch.from_numpy(o) for o in self.session.run(None, feeds))
        return outputs[0] if len(outputs) == 1 else outputs


def onnx_providers(device: torch.device, available: list[str]) -> list:
    """ONNX Runtime's execution providers for ``device``: CUDA's (onnxruntime-gpu) when the worker is on
    a GPU and it is installed, else the CPU's, with a log line saying why."""
    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in available:
        return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]
    log.info("ONNX Runtime runs on the CPU: it has no CUDAExecutionProvider (install onnxruntime-gpu)")
    return ["CPUExecutionProvider"]


def _load_onnx(path: Path, manifest: dict, threads: int, device: torch.device) -> Callable:
    import onnxruntime as ort  # only ONNX archives need it

    options = ort.SessionOptions()
    # The worker's thread budget (handler.threads), as torch gets it: ORT would otherwise take
    # every core in each worker, like torch does when nobody sets its threads.
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL  # one op at a time; parallel within ops
    # All graph rewrites (constant folding, node fusions such as LayerNorm and GELU); export
    # verifies the session with these same options, so the fused graph is the one that was checked.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle pool threads would busy-wait between ops, taking CPU from the frontend and other workers.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    providers = onnx_providers(device, ort.get_available_providers())
    return OnnxModel(ort.InferenceSession(str(path), options, providers=providers))


def _load_aoti(path: Path, manifest: dict, threads: int, device: torch.device) -> Callable:
    built = manifest.get("runtime", {}).get("cpu_capability", "DEFAULT")
    here = torch.backends.cpu.get_cpu_capability()
    ranks = {name: rank for rank, name in enumerate(CPU_CAPABILITIES)}
    if (
        device.type == "cpu"
        and built != here
        and (built not in ranks or here not in ranks or ranks[here] < ranks[built])
    ):
        raise ArtifactIncompatible(
            f"{manifest['name']}: AOTInductor package compiled for {built} CPUs; this CPU supports {here}. "
            f"Rebuild it on the serving machine type (`make archive FORMAT=aoti`) or serve another format."
        )
    # Its kernels run on torch's OpenMP threads: torch.set_num_threads (done by the handler) applies.
    runner = torch._inductor.aoti_load_package(str(path), device_index=device.index if device.type == "cuda" else -1)
    # The compiled kernels read inputs as dense, ignoring a view's strides: a narrowed or sliced batch
    # (the length planner's groups) gave rows of zeros. Contiguous copies cost little beside the model.
    return lambda *tensors: runner(*(t.contiguous() for t in tensors))


def _load_exported(path: Path, manifest: dict, threads: int, device: torch.device) -> Callable:
    return torch.export.load(str(path)).module().to(device)


# Format name (as in the manifest) -> loader(path, manifest, threads, device). Handlers do not change.
LOADERS: dict[str, Callable[[Path, dict, int, torch.device], Callable]] = {
    "torchscript": _load_torchscript,
    "onnx": _load_onnx,
    "aoti": _load_aoti,
    "exported": _load_exported,
}
# Formats whose precision is applied at call time (autocast); an AOTInductor package has its own
# compiled in, and ONNX graphs are served as exported (fp32).
AUTOCAST_FORMATS = ("torchscript", "exported")


class Bound(torch.nn.Module):
    """A model called with its tensors only: ``constants`` passed by keyword every call (the spec's
    ``constants`` at export, where torch.export and tracing bake them in; the manifest's
    ``call_constants`` when serving)."""

    def __init__(self, model: Any, constants: dict):
        super().__init__()
        self.model = model
        self.constants = dict(constants)

    def forward(self, *tensors: torch.Tensor):
        return self.model(*tensors, **self.constants)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)  # parameters, buffers, submodules, ``model``
        except AttributeError:
            if name == "model":  # not set yet (e.g. while unpickling): no recursion
                raise
            return getattr(self.model, name)  # the model's own methods (its ``reset``)


def open_artifact(
    path: Path, manifest: dict, threads: int | None = None, device: torch.device | None = None, precision: str = "fp32"
) -> Callable:
    """Load ``path`` with the runtime of ``manifest["format"]`` on ``device`` (default: the CPU),
    computing in ``precision``; ``threads`` defaults to torch's."""
    fmt, device = manifest["format"], device or torch.device("cpu")
    if fmt not in LOADERS:
        raise ValueError(f"{manifest['name']}: unknown artifact format {fmt!r}; known: {sorted(LOADERS)}")
    model = LOADERS[fmt](Path(path), manifest, threads or torch.get_num_threads(), device)
    constants = manifest.get("call_constants") or {}
    model = Bound(model, constants) if constants else model
    return with_precision(model, device, precision) if fmt in AUTOCAST_FORMATS else model


def load_artifact(
    folder: Path, manifest: dict, threads: int | None = None, device: torch.device | None = None
) -> Callable:
    """Load the artifact the manifest names for ``device`` (default: the CPU), in the precision export
    verified for it, after checking its sha256.

    Raises:
        ArtifactMismatch: the file on disk is not the one that was verified at export.
        ArtifactIncompatible: this machine cannot run it (or the manifest has none for ``device``).
    """
    device = device or torch.device("cpu")
    try:
        entry = device_entry(manifest, device)
    except LookupError as err:
        raise ArtifactIncompatible(str(err)) from None
    path = Path(folder) / entry["artifact"]
    actual = sha256_of(path)
    # The device's entry, and the manifest's own sha256 when the entry is its main artifact: both must agree.
    claims = [entry["sha256"]] + ([manifest["sha256"]] if entry["artifact"] == manifest["artifact"] else [])
    if any(actual != claim for claim in claims):
        raise ArtifactMismatch(
            f"{manifest['name']}: artifact {path.name} has sha256 {actual}, but the manifest "
            f"says {' and '.join(sorted(set(claims)))}; refusing to serve an unverified model. Re-run `make archive`."
        )
    return open_artifact(path, manifest, threads, device, entry.get("precision", "fp32"))
