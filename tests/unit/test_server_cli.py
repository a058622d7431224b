"""client.server without starting TorchServe: the private config of a throwaway server, and
`python -m client.server_cli status` on a server that is not running; and how `python -m client
predict` prints an answer."""

from __future__ import annotations

import json
import subprocess
import sys

from client.__main__ import readable
from client.api import read_properties
from client.config import private_config
from client.server import Server
from client.server_cli import status
from export.paths import CONFIG, ROOT


def test_private_config_moves_every_port_and_keeps_the_rest(tmp_path):
    config = private_config(tmp_path / "config.properties", tmp_path / "store", async_logging="true")
    base, props = read_properties(CONFIG), read_properties(config)
    ports = [props[k].rsplit(":", 1)[-1] for k in ("inference_address", "management_address", "metrics_address")]
    ports += [props[k] for k in ("grpc_inference_port", "grpc_management_port", "initial_worker_port")]
    assert len(set(ports)) == 6 and not set(ports) & {"8080", "8081", "8082", "7070", "7071"}, ports
    assert all(props[k].startswith("http://127.0.0.1:") for k in ("inference_address", "management_address"))
    assert props["model_store"] == str(tmp_path / "store")
    assert props["async_logging"] == "true"  # an added setting
    unchanged = {k: v for k, v in base.items() if "address" not in k and "port" not in k and k != "model_store"}
    assert {k: props[k] for k in unchanged} == unchanged


def test_status_of_a_stopped_server_is_an_answer_not_an_error(tmp_path, capsys):
    server = Server(CONFIG, tmp_path / "store", tmp_path, tmp_path / "state")
    assert not server.running
    assert status(server) == 0
    assert capsys.readouterr().out.strip() == "not running"


def test_the_makefile_spelling_still_runs_the_cli():
    done = subprocess.run(
        [sys.executable, "-m", "client.server_cli", "--help"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "start,stop,restart,status" in done.stdout, done.stderr


def test_the_predict_cli_prints_arrays_of_numbers_on_one_line_and_stays_json():
    answer = {
        "embedding": [0.25, -1.5e-05, 3, -0.0],
        "top": [{"label": 3, "probability": 1.0}],
        "rows": [[1, 2], [3, -4.5]],
        "words": ["a", "b"],
        "empty": [],
    }
    text = readable(answer)
    assert json.loads(text) == answer
    assert '  "embedding": [0.25, -1.5e-05, 3, -0.0],' in text.splitlines()
    assert "    [3, -4.5]" in text.splitlines()
    assert '    "a",' in text.splitlines()  # strings keep json's layout
