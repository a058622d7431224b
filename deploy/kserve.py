"""Write KServe manifests that run this project's image, and a model repository per model.

Usage: ``python -m deploy.kserve [--out build/kserve] [--storage-uri s3://bucket/prefix] [--image IMAGE]``.

- ``<out>/servingruntime.yaml``: our own ServingRuntime: the image `make image` builds, started the way
  the repository layout below expects, with readiness and liveness probes (client/health.py).
- ``<out>/networkpolicy.yaml``: only the ingress and Knative's activator reach the inference ports.
- ``<out>/<name>/config/config.properties`` and ``<out>/<name>/model-store/<name>.mar``: what the storage
  initializer copies to /mnt/models; ``<out>/<name>/inferenceservice.yaml`` names the runtime.
One repository per model, so each scales on its own. Why not KServe's built-in TorchServe runtime:
docs/SCALING.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

import yaml

from client.files import sha256_file
from client.trust import ENV as DIGEST_ENV
from client.trust import record_digest
from deploy.kserve_gpu import CUDA_IMAGE, cuda_runtime, declares_gpu, gpu_service
from export.archive import check_archive
from export.paths import BUILD, MODEL_STORE, ROOT, model_names
from export.spec import load_spec

RUNTIME = "torchserve-kit"  # the ServingRuntime's name, and the model format only it supports
DEFAULT_IMAGE = "localhost/torchserve-kit:latest"
MOUNT = "/mnt/models"  # where KServe's storage initializer puts the storageUri's contents
CONTAINER_CONFIG = ROOT / "deploy" / "container" / "config.properties"
INFERENCE_PORT = 8080  # the container config's inference_address
# Knative puts its queue-proxy in front of the container: the ingress and activator reach the pod
# there (8012 HTTP/1, 8013 HTTP/2); the autoscaler scrapes the proxy's metrics on 9090.
QUEUE_PROXY_PORTS = (8012, 8013)
AUTOSCALER_METRICS_PORT = 9090
INGRESS_NAMESPACES = ("istio-system", "knative-serving")  # the ingress gateway; the activator
# The pods themselves, by their standard labels: Istio's ingress gateway and Knative's activator.
INGRESS_PODS = (("istio-system", {"istio": "ingressgateway"}), ("knative-serving", {"app": "activator"}))
METRICS_PORT = 8082  # TorchServe's Prometheus metrics (docs/SCALING.md)
MONITORING = "monitoring"  # the namespace Prometheus scrapes from


def repository_config(name: str) -> str:
    """The container config, loading one model from the repository's model store at start."""
    text = CONTAINER_CONFIG.read_text()
    text = text.replace("# The archives baked into the image, every one loaded at start", "# The repository's archive")
    text = text.replace("(deploy/kserve.py replaces these two).", "(written by `make kserve`).")
    text = re.sub(r"^model_store=.*$", f"model_store={MOUNT}/model-store", text, flags=re.M)
    snapshot = json.dumps(model_snapshot(name), separators=(",", ":"))
    return re.sub(r"^load_models=.*$", lambda _: f"model_snapshot={snapshot}", text, flags=re.M)


def model_snapshot(name: str) -> dict:
    """The ``model_snapshot`` that loads one model at start, with its archive's serving settings."""
    spec = load_spec(name)
    config = yaml.safe_load((spec.folder / "model-config.yaml").read_text())
    keys = ("minWorkers", "maxWorkers", "batchSize", "maxBatchDelay", "responseTimeout")
    version = {"defaultVersion": True, "marName": f"{name}.mar", **{k: config[k] for k in keys if k in config}}
    return {"name": "startup.cfg", "modelCount": 1, "models": {name: {str(spec.version): version}}}


def probe(check: str, period: int, failures: int) -> dict:
    """An exec probe running ``python -m client.health <check>`` in the container (no token needed)."""
    command = ["python", "-P", "-m", "client.health", check]  # -P: never import from the working directory
    return {"exec": {"command": command}, "periodSeconds": period, "timeoutSeconds": 10, "failureThreshold": failures}


def serving_runtime(image: str) -> dict:
    """Our ServingRuntime: the image's entry point with the repository's model store and config."""
    container = {
        "name": "kserve-container",  # the name KServe looks for
        "image": image,
        "args": ["--model-store", f"{MOUNT}/model-store"],
        "env": [{"name": "TS_CONFIG_FILE", "value": f"{MOUNT}/config/config.properties"}],
        "ports": [{"containerPort": INFERENCE_PORT, "protocol": "TCP"}],
        # Warm-up (loading, then every sample once) may take minutes: the startup probe allows 10.
        "startupProbe": probe("ready", 10, 60),
        "readinessProbe": probe("ready", 10, 2),
        "livenessProbe": probe("live", 15, 4),
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 10001,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "resources": {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
    }
    return harden(
        {
            "apiVersion": "serving.kserve.io/v1alpha1",
            "kind": "ServingRuntime",
            "metadata": {"name": RUNTIME},
            "spec": {
                "supportedModelFormats": [{"name": RUNTIME, "version": "1", "autoSelect": True}],
                "protocolVersions": ["v1", "v2"],
                "containers": [container],
            },
        }
    )


# Writable places in a read-only container: TorchServe's logs, and /tmp (archives unpacked there, the
# JVM's and Python's temp files, the warm-up state). Sizes bound what a handler or a flood can write.
SCRATCH = {"logs": ("/var/log/torchserve", "1Gi"), "tmp": ("/tmp", "4Gi")}
EPHEMERAL = {"requests": "1Gi", "limits": "6Gi"}  # above the emptyDirs together: logs + tmp


def harden(runtime: dict) -> dict:
    """Issue 22 findings 7 and 11: a read-only root filesystem with emptyDirs for logs and /tmp, the
    runtime's default seccomp profile, ephemeral-storage limits, and probes that never import from a
    folder the server can write (PYTHONSAFEPATH, a root-owned working directory)."""
    spec, container = runtime["spec"], runtime["spec"]["containers"][0]
    spec["volumes"] = [{"name": n, "emptyDir": {"sizeLimit": size}} for n, (_, size) in SCRATCH.items()]
    container["volumeMounts"] = [{"name": n, "mountPath": path} for n, (path, _) in SCRATCH.items()]
    container["securityContext"] |= {"readOnlyRootFilesystem": True, "seccompProfile": {"type": "RuntimeDefault"}}
    for kind, size in EPHEMERAL.items():
        container["resources"].setdefault(kind, {})["ephemeral-storage"] = size
    container["workingDir"] = "/srv/torchserve"  # root-owned and read-only: nothing planted there
    container["env"] += [
        {"name": "PYTHONSAFEPATH", "value": "1"},  # `python -m` does not put the working directory first
        {"name": "LOG_LOCATION", "value": SCRATCH["logs"][0]},
        {"name": "METRICS_LOCATION", "value": SCRATCH["logs"][0]},
        {"name": "TMPDIR", "value": "/tmp"},
    ]
    return runtime


def k8s_name(name: str) -> str:
    return name.replace("_", "-")  # Kubernetes names allow no underscores


def inference_service(name: str, storage_uri: str) -> dict:
    """An InferenceService naming our runtime, speaking v2."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": k8s_name(name)},
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "maxReplicas": 4,
                "scaleMetric": "concurrency",
                "scaleTarget": 16,
                "model": {
                    "modelFormat": {"name": RUNTIME},
                    "runtime": RUNTIME,
                    "protocolVersion": "v2",
                    "storageUri": f"{storage_uri.rstrip('/')}/{name}",
                },
            }
        },
    }


def pinned_service(service: dict, archive: Path) -> dict:
    """The InferenceService carrying its archive's sha256 (KIT_ARCHIVE_DIGESTS): the container refuses
    to start on an archive in the bucket with another digest (client/trust.py)."""
    line = f"{sha256_file(archive)}  {archive.name}"
    service["spec"]["predictor"]["model"]["env"] = [{"name": DIGEST_ENV, "value": line}]
    return service


def pods(namespace: str, labels: dict) -> dict:
    """A NetworkPolicy peer: the pods with ``labels`` in ``namespace``."""
    return {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
        "podSelector": {"matchLabels": labels},
    }


def network_policy(names: list[str]) -> dict:
    """Issue 22 finding 6. Ingress: the inference ports from the ingress gateway and Knative's activator
    pods only (by label), the queue-proxy's metrics from the autoscaler, TorchServe's metrics (8082) from
    the monitoring namespace. Egress: DNS only, so a compromised handler reaches neither the cloud's
    metadata service nor the API server (add your bucket's endpoint for the storage initializer). Inside
    the pod inference has no token: this policy is what keeps other pods out."""
    ports = [{"protocol": "TCP", "port": p} for p in (INFERENCE_PORT, *QUEUE_PROXY_PORTS)]
    selector = {"key": "serving.kserve.io/inferenceservice", "operator": "In", "values": [k8s_name(n) for n in names]}
    dns = [{"protocol": proto, "port": 53} for proto in ("UDP", "TCP")]
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": f"{RUNTIME}-inference-only"},
        "spec": {
            "podSelector": {"matchExpressions": [selector]},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [
                {"from": [pods(ns, labels) for ns, labels in INGRESS_PODS], "ports": ports},
                {
                    "from": [pods("knative-serving", {"app": "autoscaler"})],
                    "ports": [{"protocol": "TCP", "port": AUTOSCALER_METRICS_PORT}],
                },
                {
                    "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": MONITORING}}}],
                    "ports": [{"protocol": "TCP", "port": METRICS_PORT}],
                },
            ],
            "egress": [{"to": [pods("kube-system", {"k8s-app": "kube-dns"})], "ports": dns}],
        },
    }


def write_repository(
    name: str, out: Path, storage_uri: str, store: Path = MODEL_STORE, gpu_values: dict | None = None
) -> Path:
    """Write one model's repository and InferenceService (``gpu_values``: a GPU model's nodeSelector,
    tolerations, gpus); returns its folder."""
    archive = store / f"{name}.mar"
    if not archive.exists():
        raise FileNotFoundError(f"{archive} is missing: run `make archive` first")
    check_archive(archive)
    folder = out / name
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "config").mkdir(parents=True)
    (folder / "model-store").mkdir()
    shutil.copy2(archive, folder / "model-store" / archive.name)
    record_digest(folder / "model-store", folder / "model-store" / archive.name)  # KIT_ARCHIVE_DIGESTS wins
    (folder / "config" / "config.properties").write_text(repository_config(name))
    service = pinned_service(inference_service(name, storage_uri), archive)
    service = gpu_service(service, gpu_values or {}) if declares_gpu(name) else service
    (folder / "inferenceservice.yaml").write_text(yaml.safe_dump(service, sort_keys=False))
    return folder


def write_canary(name: str, out: Path, storage_uri: str, percent: int, store: Path = MODEL_STORE) -> Path:
    """A canary rollout of a rebuilt archive: its repository under ``<out>/<name>-<tag>/`` (tag: the
    first 8 hex digits of the archive's sha256, so each build has its own storage prefix and the
    serving revision's pods never load the new bytes) and ``inferenceservice-canary.yaml``: the
    same InferenceService pointing there, with KServe's ``canaryTrafficPercent``. Applied, KServe
    starts a new revision and sends it ``percent`` % of requests; 100 (or removing the field)
    promotes it, 0 sends everything back to the last revision that served all traffic."""
    if not 0 <= percent <= 100:
        raise ValueError(f"canary percent {percent}: give 0..100")
    tag = hashlib.sha256((store / f"{name}.mar").read_bytes()).hexdigest()[:8]
    target = write_repository(name, out / f"{name}-{tag}", storage_uri, store)
    (target / "inferenceservice.yaml").unlink()  # the serving one stays the one `make kserve` wrote
    service = inference_service(name, storage_uri)
    service["spec"]["predictor"]["model"]["storageUri"] = f"{storage_uri.rstrip('/')}/{name}-{tag}/{name}"
    service["spec"]["predictor"]["canaryTrafficPercent"] = percent
    (target / "inferenceservice-canary.yaml").write_text(yaml.safe_dump(service, sort_keys=False))
    return target


def write_all(
    out: Path, storage_uri: str, image: str, store: Path = MODEL_STORE, cuda_image: str = CUDA_IMAGE, gpu_values=None
) -> list[Path]:
    """Every model's repository, the ServingRuntime (and the CUDA one when a model declares a GPU) and
    the NetworkPolicy; returns the model folders."""
    names = model_names()
    folders = [write_repository(name, out, storage_uri, store, gpu_values) for name in names]
    (out / "servingruntime.yaml").write_text(yaml.safe_dump(serving_runtime(image), sort_keys=False))
    cuda = out / "servingruntime-cuda.yaml"
    cuda.unlink(missing_ok=True)
    if any(declares_gpu(name) for name in names):
        cuda.write_text(yaml.safe_dump(cuda_runtime(serving_runtime(image), cuda_image), sort_keys=False))
    (out / "networkpolicy.yaml").write_text(yaml.safe_dump(network_policy(names), sort_keys=False))
    return folders


def main(argv: list[str] | None = None) -> int:
    """Command line for `make kserve`."""
    parser = argparse.ArgumentParser(prog="python -m deploy.kserve", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BUILD / "kserve", help="output folder (default: build/kserve)")
    parser.add_argument(
        "--storage-uri", default="s3://YOUR-BUCKET/torchserve-kit", help="where the repositories will be pushed"
    )
    parser.add_argument("--image", default=DEFAULT_IMAGE, help=f"the image (default: {DEFAULT_IMAGE})")
    parser.add_argument("--cuda-image", default=CUDA_IMAGE, help=f"GPU models' image (default: {CUDA_IMAGE})")
    parser.add_argument(
        "--gpu-values", type=Path, help="YAML with GPU models' nodeSelector, tolerations, gpus (default: none)"
    )
    parser.add_argument("--canary", metavar="NAME", help="only a canary rollout of NAME's archive (default: off)")
    parser.add_argument("--percent", type=int, default=10, help="canary: share of requests, 0..100 (default: 10)")
    args = parser.parse_args(argv)
    if args.canary:  # README: "Canary rollout on KServe"
        print(write_canary(args.canary, args.out, args.storage_uri, args.percent))
        return 0
    try:
        values = yaml.safe_load(args.gpu_values.read_text()) if args.gpu_values else {}
        folders = write_all(args.out, args.storage_uri, args.image, cuda_image=args.cuda_image, gpu_values=values)
    except FileNotFoundError as err:
        print(f"kserve: {err}", file=sys.stderr)
        return 1
    for path in [*folders, args.out / "servingruntime.yaml", args.out / "networkpolicy.yaml"]:
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
