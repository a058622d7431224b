"""``make new-model NAME=x FROM=file SAMPLES=dir``: the user's own sample files become the model's samples.

``take`` copies the images (.png .jpg .jpeg .webp), WAV clips (.wav) or texts (.txt) of ``dir`` into
``samples/``, lists them as the spec's samples, and declares the input they feed with the codec of
their kind, filled from the input's shape and the files (``InputCodec.from_samples``; CHOOSE only
where neither says). ``finish``, once the outputs are known, gives an image model's ``[batch,
classes]`` output a ``classes`` codec, and has ``samples/expected.json`` generated from these files.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from handlers.codec import codec_class

KINDS = {".png": "image", ".jpg": "image", ".jpeg": "image", ".webp": "image", ".wav": "audio", ".txt": "text"}


def user_samples(folder: Path) -> bool:
    """Whether ``samples/`` holds files of a codec kind (then no generic JSON sample is written)."""
    return any(p.suffix.lower() in KINDS for p in (folder / "samples").glob("*"))


def flow(value) -> str:
    """A value as one line of YAML flow style."""
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 16, sort_keys=False)
    return text.removesuffix("\n").removesuffix("\n...").strip()  # a scalar ends its document with "..."


def take(folder: Path, source: Path) -> str:
    """Copy the sample files and declare their input's codec; returns what was done, in words."""
    if not source.is_dir():
        raise SystemExit(f"SAMPLES={source}: expected a folder of sample files ({', '.join(sorted(KINDS))})")
    files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in KINDS)
    kinds = sorted({KINDS[p.suffix.lower()] for p in files})
    if len(kinds) != 1:
        found = "none" if not kinds else " and ".join(kinds)
        raise SystemExit(f"SAMPLES={source}: expected files of one kind (images, .wav or .txt); found {found}")
    kind = kinds[0]
    copied = []
    for path in files:
        target = folder / "samples" / path.name.replace(" ", "_")
        target.write_bytes(path.read_bytes())
        copied.append(target)
    spec_path = folder / "spec.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    entries = spec.get("inputs") or [spec["input"]]
    entry = entries[0]
    extra = []  # top-level lines the codec adds (audio: the sequence windows, to choose)
    try:
        declared = codec_class(f"input:{kind}").from_samples(dict(entry), copied)
        extra = getattr(codec_class(f"input:{kind}"), "spec_lines", lambda _: [])(declared)
    except ValueError as err:
        declared = entry | {"codec": {"kind": kind, "note": f"CHOOSE: {err}"}}
    lines = replace_entry(spec_path.read_text().splitlines(), entry["name"], declared)
    globs = sorted({f"samples/*{p.suffix}" for p in copied})
    lines = [
        f"samples: {flow(globs)}         # your files (SAMPLES=)" if line.startswith("samples:") else line
        for line in lines
    ]
    spec_path.write_text("\n".join([*lines, *extra]) + "\n")
    return f"copied {len(copied)} {kind} sample(s) to {folder / 'samples'}; input {entry['name']!r}: codec {kind}"


def replace_entry(lines: list[str], name: str, entry: dict) -> list[str]:
    """The spec's lines with input ``name``'s block (``  - name: <name>`` up to the next entry or
    top-level key) rewritten from ``entry``."""
    start = next(i for i, line in enumerate(lines) if line.strip() in (f"- name: {name}", f"name: {name}"))
    end = start + 1
    while end < len(lines) and lines[end].startswith("    ") and not lines[end].lstrip().startswith("- "):
        end += 1
    indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
    body = indent.replace("-", " ") + ("  " if lines[start].lstrip().startswith("- ") else "")
    block = [f"{indent}{'- ' if lines[start].lstrip().startswith('- ') else ''}name: {name}"]
    block += [f"{body}{key}: {flow(value)}" for key, value in entry.items() if key != "name"]
    return lines[:start] + block + lines[end:]


def finish(folder: Path) -> bool:
    """Give a [batch, classes] output of an image model a ``classes`` codec; True when the spec changed
    (its expected answers are then generated again)."""
    spec_path = folder / "spec.yaml"
    spec = yaml.safe_load(spec_path.read_text())
    entries = spec.get("inputs") or [spec.get("input") or {}]
    outputs = spec.get("outputs") or []
    image = any(isinstance(e.get("codec"), dict) and e["codec"].get("kind") == "image" for e in entries)
    if segments_output(spec, entries, outputs):  # audio called window by window: one score per window
        return declare(spec_path, outputs[0]["name"], {"kind": "segments", "threshold": 0.5, "min_duration": 0.0})
    if not image or len(outputs) != 1 or outputs[0].get("codec") or len(outputs[0].get("shape", [])) != 2:
        return False
    classes = outputs[0]["shape"][1]
    if not isinstance(classes, int) or classes < 2:
        return False
    codec = {"kind": "classes", "labels": None, "softmax": True, "top_k": min(5, classes)}
    text = spec_path.read_text().splitlines()
    at = next(i for i, line in enumerate(text) if line.lstrip().startswith(f"- {{name: {outputs[0]['name']},"))
    text[at] = text[at].rstrip()[:-1] + f", codec: {flow(codec)}}}"
    text.insert(at + 1, "    # labels: a file of one label a line; softmax: false if the model returns probabilities")
    spec_path.write_text("\n".join(text) + "\n")
    (folder / "samples" / "expected.json").unlink(missing_ok=True)
    return True


def segments_output(spec: dict, entries: list, outputs: list) -> bool:
    """Whether the model is an audio model called window by window with one score per window out."""
    audio = any(isinstance(e.get("codec"), dict) and e["codec"].get("kind") == "audio" for e in entries)
    shape = outputs[0].get("shape", []) if len(outputs) == 1 else []
    return audio and bool(spec.get("sequence")) and not outputs[0].get("codec") and shape[1:] == ["windows"]


def declare(spec_path: Path, name: str, codec: dict) -> bool:
    """Add ``codec`` to output ``name``'s line; its expected answers are then generated again."""
    text = spec_path.read_text().splitlines()
    at = next(i for i, line in enumerate(text) if line.lstrip().startswith(f"- {{name: {name},"))
    text[at] = text[at].rstrip()[:-1] + f", codec: {flow(codec)}}}"
    text.insert(at + 1, "    # segments: runs of windows scoring at least threshold, in seconds; and the scores")
    spec_path.write_text("\n".join(text) + "\n")
    (spec_path.parent / "samples" / "expected.json").unlink(missing_ok=True)
    return True


def wants_json_sample(folder: Path) -> bool:
    """Whether to write the generic JSON sample: the folder has no samples at all, or has no
    handler.py (the generic handler takes JSON) and no JSON sample yet. A folder with its own
    handler and samples keeps just those: its handler may not take the generic JSON."""
    found = [p for p in (folder / "samples").iterdir() if p.is_file() and p.name != "expected.json"]
    if not found:
        return True
    if user_samples(folder):  # SAMPLES=: the user's own files, never noise
        return False
    return not (folder / "handler.py").exists() and not any(p.suffix == ".json" for p in found)
