"""Write a KServe-ready model repository per model, and its InferenceService manifest.

Usage: ``python -m deploy.kserve [--out build/kserve] [--storage-uri s3://bucket/prefix]``.

For each model: ``<out>/<name>/config/config.properties`` and ``<out>/<name>/model-store/<name>.mar``
(the layout KServe's storage initializer copies to /mnt/models for the TorchServe runtime), and
``<out>/<name>/inferenceservice.yaml``. One repository per model, so each scales on its own.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import yaml

from export.archive import check_archive
from export.paths import BUILD, MODEL_STORE, ROOT, model_names
from export.spec import load_spec

# What KServe's TorchServe runtime expects: inference and management on 8085 behind its own proxy
# on 8080, metrics on 8082, the model store at /mnt/models/model-store.
KSERVE_PROPERTIES = """\
# TorchServe config for KServe's TorchServe runtime (written by `make kserve`; do not edit here).
# KServe runs: torchserve --start --model-store /mnt/models/model-store \\
#              --ts-config /mnt/models/config/config.properties
# Inside the pod TorchServe listens on all interfaces: KServe's proxy and Prometheus reach it there.
inference_address=http://0.0.0.0:8085
management_address=http://0.0.0.0:8085
metrics_address=http://0.0.0.0:8082
grpc_inference_address=0.0.0.0
grpc_inference_port=7070
grpc_management_port=7071
# Settings may be overridden by TS_* environment variables in the pod spec (e.g. TS_JOB_QUEUE_SIZE).
enable_envvars_config=true
# The v2 (Open Inference Protocol) endpoint: /v2/models/{model}/infer. The handlers speak v2
# natively, so no service_envelope is set (TorchServe's kservev2 envelope reads one request per batch).
ts_open_inference_protocol=true
# KServe's proxy sends no TorchServe tokens; the pod is reached only through KServe's ingress,
# where authentication belongs (and a NetworkPolicy keeps everything else out).
disable_token_authorization=true
# Models come from model_snapshot below, never through the management API.
enable_model_api=false
allowed_urls=^model-store-only:$
metrics_mode=prometheus
max_request_size=6553500
max_response_size=6553500
model_store=/mnt/models/model-store
"""


def model_snapshot(name: str) -> dict:
    """The ``model_snapshot`` that loads one model at start, with its archive's serving settings."""
    spec = load_spec(name)
    config = yaml.safe_load((spec.folder / "model-config.yaml").read_text())
    version = {
        "defaultVersion": True,
        "marName": f"{name}.mar",
        **{key: config[key] for key in ("minWorkers", "maxWorkers", "batchSize", "maxBatchDelay", "responseTimeout")},
    }
    return {"name": "startup.cfg", "modelCount": 1, "models": {name: {str(spec.version): version}}}


def inference_service(name: str, storage_uri: str) -> dict:
    """An InferenceService for the TorchServe runtime, speaking v2."""
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": name.replace("_", "-")},  # Kubernetes names allow no underscores
        "spec": {
            "predictor": {
                "minReplicas": 1,
                "maxReplicas": 4,
                "scaleMetric": "concurrency",
                "scaleTarget": 16,
                "model": {
                    "modelFormat": {"name": "pytorch"},
                    "protocolVersion": "v2",
                    "storageUri": f"{storage_uri.rstrip('/')}/{name}",
                    "resources": {
                        "requests": {"cpu": "2", "memory": "2Gi"},
                        "limits": {"cpu": "2", "memory": "4Gi"},
                    },
                },
            }
        },
    }


def write_repository(name: str, out: Path, storage_uri: str, store: Path = MODEL_STORE) -> Path:
    """Write one model's repository and manifest; returns its folder."""
    archive = store / f"{name}.mar"
    if not archive.exists():
        raise FileNotFoundError(f"{archive} is missing: run `make archive` first")
    check_archive(archive)
    folder = out / name
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "config").mkdir(parents=True)
    (folder / "model-store").mkdir()
    shutil.copy2(archive, folder / "model-store" / archive.name)
    snapshot = json.dumps(model_snapshot(name), separators=(",", ":"))
    (folder / "config" / "config.properties").write_text(KSERVE_PROPERTIES + f"model_snapshot={snapshot}\n")
    (folder / "inferenceservice.yaml").write_text(yaml.safe_dump(inference_service(name, storage_uri), sort_keys=False))
    return folder


def main(argv: list[str] | None = None) -> int:
    """Command line for `make kserve`."""
    parser = argparse.ArgumentParser(prog="python -m deploy.kserve", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BUILD / "kserve", help="output folder (default: build/kserve)")
    parser.add_argument(
        "--storage-uri", default="s3://YOUR-BUCKET/torchserve-kit", help="where the repositories will be pushed"
    )
    args = parser.parse_args(argv)
    try:
        for name in model_names():
            folder = write_repository(name, args.out, args.storage_uri)
            shown = folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else folder
            print(f"{shown}: repository + inferenceservice.yaml")
    except FileNotFoundError as err:
        print(f"kserve: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
