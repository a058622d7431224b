"""Static checks of what ships: the Containerfile, the container config, the KServe manifests and
the runtime/development requirements split. No image, no cluster: the files themselves."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest

from client.api import read_properties
from deploy.kserve import (
    CONTAINER_CONFIG,
    INGRESS_NAMESPACES,
    MONITORING,
    MOUNT,
    inference_service,
    network_policy,
    repository_config,
    serving_runtime,
)
from export.paths import ROOT, model_names

CONTAINERFILE = (ROOT / "Containerfile").read_text()
CONFIG = read_properties(CONTAINER_CONFIG)
DEV_ONLY = {"pytest", "ruff", "flask", "transformers", "sentence-transformers", "tritonclient", "onnx", "onnxscript"}


def instructions(keyword: str) -> list[str]:
    """The Containerfile's instructions of one kind (continuation lines joined)."""
    text = CONTAINERFILE.replace("\\\n", " ")
    return [line.split(None, 1)[1] for line in text.splitlines() if line.startswith(keyword + " ")]


def port(address: str) -> int:
    return urlsplit(address).port


def private_ports() -> set[int]:
    return {port(CONFIG["management_address"]), int(CONFIG["grpc_inference_port"]), int(CONFIG["grpc_management_port"])}


def test_container_config_keeps_management_and_grpc_on_loopback():
    assert urlsplit(CONFIG["management_address"]).hostname == "127.0.0.1"
    assert CONFIG["grpc_inference_address"] == CONFIG["grpc_management_address"] == "127.0.0.1"
    assert urlsplit(CONFIG["inference_address"]).hostname == "0.0.0.0"  # the pod address
    assert CONFIG["enable_model_api"] == "false" and CONFIG["allowed_urls"] == "^model-store-only:$"


def test_the_image_runs_as_a_user_and_exposes_no_private_port():
    (user,) = instructions("USER")
    assert user.split(":")[0] not in ("0", "root")
    exposed = {int(p) for line in instructions("EXPOSE") for p in line.split()}
    assert exposed and not exposed & private_ports()
    assert port(CONFIG["inference_address"]) in exposed


def test_the_image_checks_readiness_and_forwards_sigterm():
    (check,) = instructions("HEALTHCHECK")
    assert '"client.health", "ready"' in check
    (entry,) = instructions("ENTRYPOINT")
    assert entry.startswith('["tini", "-g"')  # the whole group gets SIGTERM, not only the launcher
    start = (ROOT / "deploy" / "container" / "start.sh").read_text()
    # The server in its own session: the group's SIGTERM reaches start.sh, which drains, then stops it.
    assert "setsid torchserve --foreground" in start and "trap stop TERM" in start and "health drain" in start


def test_the_image_installs_only_the_runtime_set_offline_and_no_compiler():
    installs = " ".join(instructions("RUN"))
    assert "--no-index" in installs and "-r /tmp/requirements-runtime.txt" in installs
    assert not re.search(r"\b(gcc|g\+\+|build-essential|clang)\b", installs)
    copied = " ".join(instructions("COPY"))
    assert "tests" not in copied and "requirements.txt" not in copied


def requirement_pins(name: str) -> dict[str, str]:
    lines = (ROOT / name).read_text().splitlines()
    return dict(line.split("==", 1) for line in lines if "==" in line and not line.startswith("#"))


def test_requirements_split_runtime_from_development():
    runtime, dev = requirement_pins("requirements-runtime.txt"), requirement_pins("requirements.txt")
    assert "-r requirements-runtime.txt" in (ROOT / "requirements.txt").read_text().splitlines()
    assert not set(runtime) & set(dev), "pinned twice: the two pins can drift apart"
    assert not {re.sub(r"\[.*", "", n) for n in runtime} & DEV_ONLY
    assert runtime["torch"] == "2.13.0"


def test_serving_runtime_matches_the_image_and_the_repository_layout():
    (container,) = serving_runtime("registry.example/kit:1")["spec"]["containers"]
    assert container["image"] == "registry.example/kit:1" and container["name"] == "kserve-container"
    assert [p["containerPort"] for p in container["ports"]] == [port(CONFIG["inference_address"])]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["TS_CONFIG_FILE"] == f"{MOUNT}/config/config.properties"
    store = container["args"][container["args"].index("--model-store") + 1]
    assert f"model_store={store}" in repository_config(model_names()[0]).splitlines()
    assert container["readinessProbe"]["exec"]["command"][-1] == "ready"
    assert container["startupProbe"]["exec"]["command"][-1] == "ready"
    assert container["livenessProbe"]["exec"]["command"][-1] == "live"
    (user,) = instructions("USER")
    assert container["securityContext"]["runAsNonRoot"] and container["securityContext"]["runAsUser"] == int(
        user.split(":")[0]
    )


@pytest.mark.parametrize("name", model_names())
def test_inference_services_name_our_runtime(name):
    runtime = serving_runtime("x")
    model = inference_service(name, "s3://b/p")["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in [f["name"] for f in runtime["spec"]["supportedModelFormats"]]
    assert model["modelFormat"]["name"] != "pytorch"  # that selects KServe's built-in TorchServe runtime
    config = repository_config(name)
    assert "load_models=" not in config and f'"{name}":' in config and f'"marName":"{name}.mar"' in config


def test_network_policy_admits_only_the_ingress_to_inference():
    names = model_names()
    policy = network_policy(names)["spec"]
    (selector,) = policy["podSelector"]["matchExpressions"]
    assert selector["values"] == [n.replace("_", "-") for n in names]
    admitted = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert port(CONFIG["inference_address"]) in admitted and not admitted & private_ports()
    sources = {
        s["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for r in policy["ingress"]
        for s in r["from"]
    }
    assert sources <= {*INGRESS_NAMESPACES, MONITORING}  # the monitoring namespace: metrics (8082) only
