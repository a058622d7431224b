"""Every project path, derived once from the project root, and the names artifacts are served under.

Command line (for the Makefile): ``python -m export.paths served [FORMAT]`` prints every served name
with its model. Standard library only, and no import of the rest of the project: it runs with the
system python3 before the venv exists.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# KIT_MODELS_DIR points the whole kit at another models directory (tests use a temporary copy).
MODELS = Path(os.environ.get("KIT_MODELS_DIR") or ROOT / "models").resolve()
HANDLERS = ROOT / "handlers"
GENERIC_HANDLER = "handlers/tensor.py"  # project-relative: the handler of a model without its own
BUILD = ROOT / "build"
MODEL_STORE = ROOT / "model_store"
CONFIG = ROOT / "config.properties"

# Artifact formats. A model is served as <name> in its primary format (the first its spec lists;
# torchscript for a model.py) and as <name>_<format> in the others: build/<served name>/,
# model_store/<served name>.mar. "exported" is a torch.export ExportedProgram (.pt2) run by torch.
FORMATS = ("torchscript", "onnx", "aoti", "exported")
DEFAULT_FORMAT = FORMATS[0]
# The primary format of a model imported from a file, by the file's suffix.
SOURCE_FORMATS = {".pt": "torchscript", ".jit": "torchscript", ".pt2": "exported", ".onnx": "onnx"}


def model_names() -> list[str]:
    """Every model of the project: each folder of the models directory with a spec.yaml."""
    return sorted(p.parent.name for p in MODELS.glob("*/spec.yaml"))


def spec_formats(model: str) -> list[str]:
    """The formats ``models/<model>/spec.yaml`` lists, or its source's one format by default."""
    path = MODELS / model / "spec.yaml"
    return formats_in(path.read_text() if path.exists() else "")


def formats_in(spec_text: str) -> list[str]:
    """The formats a spec.yaml's text lists, the primary first; by default its source's one format."""
    keys = top_level_keys(spec_text, ("source", "formats"))
    formats = keys.get("formats") or []
    if isinstance(formats, str):  # a YAML scalar where a list belongs: one format
        formats = [formats]
    source = keys.get("source") or "model.py"
    return list(formats) or [SOURCE_FORMATS.get(Path(str(source)).suffix, DEFAULT_FORMAT)]


def top_level_keys(text: str, wanted: tuple[str, ...]) -> dict[str, str | list[str]]:
    """The plain values of a few top-level keys of a YAML mapping, without a YAML library (the
    Makefile asks for served names before the venv exists): scalars, quoted or not, and lists of
    them in flow (``[a, b]``, over several lines) or block (``- a``) style. ``export.spec.load_spec``
    checks the result against PyYAML's, so a spec this cannot read fails loudly."""
    found: dict[str, str | list[str]] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        key, sep, rest = line.partition(":")
        if not sep or key != key.strip() or key not in wanted:
            continue
        value = _uncomment(rest).strip()
        if value.startswith("["):
            for more in lines[i + 1 :]:
                if value.count("[") <= value.count("]"):
                    break
                value += " " + _uncomment(more).strip()
            found[key] = [_unquote(v) for v in value.strip("[]").split(",") if v.strip()]
        elif value in ("~", "null"):
            continue
        elif value:
            found[key] = _unquote(value)
        else:
            items = []
            for more in lines[i + 1 :]:
                item = _uncomment(more).strip()
                if item.startswith("- ") or item == "-":
                    items.append(_unquote(item[1:]))
                elif item:  # the next key
                    break
            if items:  # none: YAML's null
                found[key] = items
    return found


def _uncomment(text: str) -> str:
    """``text`` without a trailing ``# comment`` (a ``#`` inside quotes, or not after a space, stays)."""
    quote = None
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "#" and (i == 0 or text[i - 1].isspace()):
            return text[:i]
    return text


def _unquote(text: str) -> str:
    text = text.strip()
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'" else text


def served_name(model: str, fmt: str | None = None) -> str:
    """The name a model's artifact in ``fmt`` has in build/, the model store and TorchServe."""
    return model if fmt is None or fmt == spec_formats(model)[0] else f"{model}_{fmt}"


def parse_served_name(name: str) -> tuple[str, str]:
    """``digits_onnx`` → ``("digits", "onnx")``; a bare model name is its primary format."""
    for fmt in FORMATS:
        model = name.removesuffix(f"_{fmt}")
        if name.endswith(f"_{fmt}") and (MODELS / model / "spec.yaml").exists():
            return model, fmt
    return name, spec_formats(name)[0]


def served_table(fmt: str = "") -> list[tuple[str, str, bool]]:
    """(served name, model, whether ``fmt`` selects it) for every format every model lists, in spec
    order. ``fmt``: "" or None selects each model's primary format, ``all`` every format, else that one."""
    if fmt and fmt != "all" and fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; known: {', '.join(FORMATS)}, all")
    table = []
    for model in model_names():
        formats = spec_formats(model)
        for f in formats:
            chosen = f == formats[0] if not fmt else fmt in ("all", f)
            table.append((served_name(model, f), model, chosen))
    return table


def main(argv: list[str]) -> int:
    """``served [FORMAT]``: print ``<served name>:<model>:<1 if FORMAT selects it, else 0>`` for every
    served name (the Makefile's one source of served names; standard library only)."""
    if argv[:1] == ["served"] and len(argv) <= 2:
        try:
            table = served_table(argv[1] if len(argv) == 2 else "")
        except ValueError as err:
            print(f"FORMAT: {err}", file=sys.stderr)
            return 2
        print(" ".join(f"{name}:{model}:{int(chosen)}" for name, model, chosen in table))
        return 0
    print("usage: python -m export.paths served [FORMAT]", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
