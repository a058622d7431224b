"""Served names: the Makefile's come from ``python -m export.paths served``, which reads spec.yaml without a
YAML library; they must be what PyYAML's reading of the same files gives, for every way of writing them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from export.paths import ROOT, model_names, top_level_keys
from export.spec import load_spec

pytestmark = pytest.mark.unit

# (spec.yaml text for source/formats, what PyYAML reads in it); each a way users write these keys.
WRITINGS = {
    "flow": "source: model.py\nformats: [torchscript, onnx, aoti]  # a comment\n",
    "quoted source": 'source: "model.onnx"   # imported\n',
    "single-quoted": "source: 'model.pt2'\n",
    "block": "formats:\n  - onnx\n  - torchscript   # second\n\nmethod: trace\n",
    "block, no indent": "formats:\n- aoti\n# a comment\n- onnx\nreset: null\n",
    "multi-line flow": "formats: [onnx,\n          torchscript]\n",
    "quoted items": "formats: ['onnx', \"aoti\"]\n",
    "null": "formats: ~\nsource: model.onnx\n",
    "nested keys": "inputs:\n  - name: x\n    formats: [aoti]\nsource: model.py\n",
}


def yaml_served(text: str, model: str, fmt: str) -> list[str]:
    """The served names of a spec text, the reference way: PyYAML, and the README's naming rule."""
    raw = yaml.safe_load(text) or {}
    suffix = Path(str(raw.get("source", "model.py"))).suffix
    formats = raw.get("formats") or [{".onnx": "onnx", ".pt2": "exported"}.get(suffix, "torchscript")]
    chosen = [formats[0]] if not fmt else formats if fmt == "all" else [f for f in formats if f == fmt]
    return [model if f == formats[0] else f"{model}_{f}" for f in chosen]


@pytest.mark.parametrize("writing", WRITINGS)
def test_plain_reader_reads_what_pyyaml_reads(writing):
    text = WRITINGS[writing]
    raw = yaml.safe_load(text)
    wanted = {k: raw[k] for k in ("source", "formats") if raw.get(k) is not None}
    assert top_level_keys(text, ("source", "formats")) == wanted


def make_served(models_dir: Path, fmt: str, python: str = sys.executable) -> list[str]:
    """SERVED as the Makefile computes it (``make -p``: the variables, no target run)."""
    env = os.environ | {"KIT_MODELS_DIR": str(models_dir)}
    out = subprocess.run(
        ["make", "-pn", f"FORMAT={fmt}", f"PYTHON={python}", "help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("SERVED :="))
    return line.removeprefix("SERVED :=").split()


def test_makefile_serves_what_pyyaml_reads(tmp_path):
    """Every writing as one model's spec, in every FORMAT; the interpreter has no yaml module, as the
    system python3 of a fresh clone may not."""
    for i, text in enumerate(WRITINGS.values()):
        (tmp_path / f"m{i}").mkdir()
        (tmp_path / f"m{i}" / "spec.yaml").write_text(text)
    no_yaml = tmp_path / "python3"
    no_yaml.write_text(
        f"#!{sys.executable}\n"
        "import os, runpy, sys\n"
        "sys.modules['yaml'] = None  # as a python3 without PyYAML\n"
        "sys.path.insert(0, os.getcwd())\n"
        "sys.argv = sys.argv[2:]  # -m <module> <args>\n"
        "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n"
    )
    no_yaml.chmod(0o755)
    for fmt in ("", "onnx", "aoti", "torchscript", "exported", "all"):
        want = [n for i, text in enumerate(WRITINGS.values()) for n in yaml_served(text, f"m{i}", fmt)]
        assert make_served(tmp_path, fmt, str(no_yaml)) == want, fmt


@pytest.mark.parametrize("name", model_names())
def test_project_models_served_names(name, tmp_path):
    """The project's own models: the Makefile's names are PyYAML's."""
    shutil.copytree(ROOT / "models" / name, tmp_path / name, ignore=shutil.ignore_patterns("samples"))
    text = (tmp_path / name / "spec.yaml").read_text()
    for fmt in ("", "onnx", "all"):
        assert make_served(tmp_path, fmt) == yaml_served(text, name, fmt)


def test_load_spec_refuses_formats_the_makefile_reads_otherwise(tmp_path):
    """A spec whose formats only PyYAML reads (an anchor) fails at load, not as missing archives."""
    name = model_names()[0]
    shutil.copytree(ROOT / "models" / name, tmp_path / name)
    path = tmp_path / name / "spec.yaml"
    lines = [line for line in path.read_text().splitlines() if not line.startswith("formats:")]
    path.write_text("\n".join([*lines, "formats: &formats [torchscript, onnx]", ""]))
    with pytest.raises(ValueError, match="served names read formats"):
        load_spec(name, tmp_path)
