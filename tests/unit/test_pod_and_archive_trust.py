"""Issue 22 findings 5, 6, 7, 11 and 12, static: archive digests pinned outside the archive and checked;
a KServe bucket's config may not change the image's security settings; the generated NetworkPolicy and
ServingRuntime hold the pod's boundaries; the Containerfile strips setuid bits."""

from __future__ import annotations

import hashlib
import zipfile

import pytest

from client.trust import DIGESTS, ENV, TrustError, check_config, record_digest, verify_archive, verify_store
from deploy.kserve import (
    CONTAINER_CONFIG,
    INFERENCE_PORT,
    METRICS_PORT,
    MONITORING,
    inference_service,
    network_policy,
    pinned_service,
    repository_config,
    serving_runtime,
)
from export.paths import ROOT, model_names


def archive(path, handler: bytes = b"class H: pass\n"):
    with zipfile.ZipFile(path, "w") as mar:
        mar.writestr("handler.py", handler)
    return path


def test_a_tampered_archive_is_refused_though_its_own_manifest_would_pass(tmp_path):
    mar = archive(tmp_path / "m.mar")
    record_digest(tmp_path, mar)
    assert verify_archive(tmp_path, "m") == hashlib.sha256(mar.read_bytes()).hexdigest()
    archive(mar, b"import os; os.system('id')\nclass H: pass\n")  # handler.py edited
    with pytest.raises(TrustError, match="not the pinned"):
        verify_archive(tmp_path, "m")


def test_an_archive_without_a_pin_is_refused_and_the_env_pins_win(tmp_path, monkeypatch):
    mar = archive(tmp_path / "m.mar")
    with pytest.raises(TrustError, match="no digest pinned"):
        verify_store(tmp_path)
    record_digest(tmp_path, mar)
    monkeypatch.setenv(ENV, f"{'0' * 64}  m.mar")  # the InferenceService's pin differs from the bucket's file
    with pytest.raises(TrustError):
        verify_archive(tmp_path, "m.mar")
    assert (tmp_path / DIGESTS).read_text().endswith("  m.mar\n")  # sha256sum's format


def test_the_inference_service_carries_its_archive_digest(tmp_path):
    mar = archive(tmp_path / "m.mar")
    service = pinned_service(inference_service("m", "s3://b/p"), mar)
    (env,) = service["spec"]["predictor"]["model"]["env"]
    assert env == {"name": ENV, "value": f"{hashlib.sha256(mar.read_bytes()).hexdigest()}  m.mar"}


@pytest.mark.parametrize("name", model_names())
def test_a_bucket_config_keeps_the_image_security_or_is_refused(tmp_path, name):
    bucket = tmp_path / "config.properties"
    bucket.write_text(repository_config(name))
    check_config(bucket, CONTAINER_CONFIG)  # what `make kserve` writes passes
    for line in ("disable_token_authorization=false", "inference_address=http://0.0.0.0:9", "enable_model_api=true"):
        key = line.split("=")[0]
        edited = "\n".join(x for x in repository_config(name).splitlines() if not x.startswith(f"{key}="))
        bucket.write_text(f"{edited}\n{line}\n")
        with pytest.raises(TrustError, match=key):
            check_config(bucket, CONTAINER_CONFIG)


def test_network_policy_denies_egress_but_dns_and_admits_by_pod_label():
    policy = network_policy(model_names())["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    (egress,) = policy["egress"]
    assert {p["port"] for p in egress["ports"]} == {53}
    by_port = {p["port"]: rule["from"] for rule in policy["ingress"] for p in rule["ports"]}
    assert all(peer.get("podSelector", {}).get("matchLabels") for peer in by_port[INFERENCE_PORT])
    (metrics,) = by_port[METRICS_PORT]
    assert metrics["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"] == MONITORING


def test_the_pod_is_read_only_confined_and_bounded_in_storage():
    runtime = serving_runtime("x")
    (container,) = runtime["spec"]["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] and context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["resources"]["limits"]["ephemeral-storage"]
    volumes = {v["name"]: v for v in runtime["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert all(volumes[name]["emptyDir"]["sizeLimit"] for name in mounts.values())
    env = {e["name"]: e["value"] for e in container["env"]}
    assert "/tmp" in mounts and env["LOG_LOCATION"] in mounts and env["TMPDIR"] in mounts


def test_probes_never_import_from_a_folder_the_server_can_write():
    (container,) = serving_runtime("x")["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["PYTHONSAFEPATH"] == "1" and container["workingDir"] == "/srv/torchserve"
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["exec"]["command"][:2] == ["python", "-P"]
    containerfile = (ROOT / "Containerfile").read_text()
    # /srv/torchserve is made by COPY without --chown: root's, not writable by the server's user
    assert "COPY config.properties /srv/torchserve/" in containerfile and "--chown" not in containerfile


def test_the_image_strips_setuid_and_setgid_bits():
    containerfile = (ROOT / "Containerfile").read_text()
    strip = containerfile.index("-perm /6000 -exec chmod ug-s")
    assert strip < containerfile.index("\nUSER ")  # run as root, before the image drops to its user
