"""Issue 22 findings 5 and 12 in the image: no setuid or setgid program is left; the container refuses
to start on an archive whose digest is not the pinned one, and on a bucket config that turns tokens on
or off or moves a bind. Needs podman and a built image: `make test-image`; skipped otherwise."""

from __future__ import annotations

import os
import re
import zipfile

import pytest

from deploy.kserve import MOUNT, write_all
from tests.conftest import MODELS
from tests.container.test_image import IMAGE, podman

pytestmark = [
    pytest.mark.container,
    pytest.mark.skipif(os.environ.get("KIT_CONTAINER_TESTS") != "1", reason="needs the image: make test-image"),
]
MODEL = MODELS[0]


def test_no_setuid_or_setgid_program_is_left():
    # As root, so that no folder is hidden from the search (the image's own user may not read /root).
    found = podman("run", "--rm", "--user=0", "--entrypoint=find", IMAGE, "/", "-xdev", "-type", "f", "-perm", "/6000")
    assert found.stdout.strip() == "", found.stdout


def start_once(repo) -> tuple[int, str]:
    """Run the image on ``repo`` as the ServingRuntime would, until it exits or 60 s pass."""
    args = ["run", "--rm", "--network=host", f"--volume={repo}:{MOUNT}:ro"]
    args += [f"--env=TS_CONFIG_FILE={MOUNT}/config/config.properties", IMAGE, "--model-store", f"{MOUNT}/model-store"]
    try:
        done = podman(*args, check=False, timeout=60)
    except Exception as err:  # noqa: BLE001 - still running after 60 s: it started
        return -1, str(err)
    return done.returncode, done.stdout + done.stderr


@pytest.fixture
def repo(model_store, tmp_path):
    write_all(tmp_path / "kserve", "s3://b/p", IMAGE, store=model_store)
    return tmp_path / "kserve" / MODEL


def test_a_tampered_archive_is_refused_at_start(repo):
    mar = repo / "model-store" / f"{MODEL}.mar"
    with zipfile.ZipFile(mar, "a") as archive:
        archive.writestr("planted.py", "import os\n")
    status, output = start_once(repo)
    assert status not in (0, -1) and "refusing to start" in output and "not the pinned" in output, output[-2000:]


@pytest.mark.parametrize("line", ["disable_token_authorization=false", "management_address=http://0.0.0.0:8081"])
def test_a_bucket_config_that_changes_security_is_refused_at_start(repo, line):
    config = repo / "config" / "config.properties"
    key = line.split("=")[0]
    config.write_text(re.sub(rf"^{key}=.*$", line, config.read_text(), flags=re.M))
    status, output = start_once(repo)
    assert status not in (0, -1) and "refusing to start" in output and key in output, output[-2000:]
