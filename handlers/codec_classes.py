"""Output codecs ``classes`` (scores → the top k labels) and ``tensor`` (the row as a nested list).

``classes`` options: ``labels`` (a file in the model folder, shipped in the archive: one label a
line, or a JSON list; default: the class index is the label), ``softmax`` (default false: the
output is already scores), ``top_k`` (default 5, at most the number of classes). Fields: ``label``
([k]: strings from the labels file, else INT64 indices) and ``probability`` ([k], FP32) when
``softmax`` is set, else ``score``. Its REST item, when it is the model's only output, is the
list of k records ``[{"label", "probability"}, ...]``, highest first (the shape the digits example
always answered); v2 gets the two fields as [n, k] tensors.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from handlers import oip
from handlers.codec import CodecContext, OutputCodec, known

DEFAULT_TOP_K = 5


def read_labels(path: Path) -> list[str]:
    """A labels file: a JSON list of strings, or one label per line (blank lines ignored)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        labels = json.loads(text)
        if not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
            raise ValueError(f"{path.name} must hold a JSON list of strings")
        return labels
    return [line.strip() for line in text.splitlines() if line.strip()]


class ClassesCodec(OutputCodec):
    """Class scores [batch, classes] → per instance the top k labels and their scores."""

    kind = "classes"

    @classmethod
    def check(cls, options: dict, output: dict, model: CodecContext) -> dict:
        where = f"output {output['name']!r} codec classes"
        known(options, ("labels", "softmax", "top_k"), where)
        shape = output.get("shape") or []
        if len(shape) != 2:
            raise ValueError(f"{where}: the output must be [batch, classes]; its shape is {shape}")
        classes = shape[1] if isinstance(shape[1], int) else None
        if options.get("labels") is not None:
            path = Path(model.folder) / str(options["labels"])
            if not path.is_file():
                raise ValueError(f"{where}: labels file {options['labels']!r} is not in {model.folder}")
            count = len(read_labels(path))
            if classes is not None and count != classes:
                raise ValueError(f"{where}: {options['labels']} holds {count} labels; the output has {classes} classes")
            classes = count
        top_k = options.get("top_k", min(DEFAULT_TOP_K, classes or DEFAULT_TOP_K))
        if type(top_k) is not int or top_k < 1 or (classes is not None and top_k > classes):
            raise ValueError(f"{where}: top_k must be an integer from 1 to the number of classes ({classes})")
        if not isinstance(options.get("softmax", False), bool):
            raise ValueError(f"{where}: softmax must be true or false")
        return {"labels": options.get("labels"), "softmax": options.get("softmax", False), "top_k": top_k}

    @classmethod
    def extra_files(cls, options: dict) -> list[str]:
        return [options["labels"]] if options.get("labels") else []

    def __init__(self, options: dict, output: dict, model: CodecContext):
        super().__init__(options, output, model)
        path = options.get("labels")
        self.labels = read_labels(Path(model.folder) / path) if path else None
        self.score = "probability" if options["softmax"] else "score"

    def fields(self) -> dict[str, str]:
        return {"label": "BYTES" if self.labels else "INT64", self.score: "FP32"}

    def encode(self, row: torch.Tensor, info: dict) -> dict:
        scores = torch.softmax(row.float(), dim=-1) if self.options["softmax"] else row.float()
        top = scores.topk(min(self.options["top_k"], scores.shape[-1]))
        indices = top.indices.tolist()
        labels = [self.labels[i] for i in indices] if self.labels else indices
        return {"label": labels, self.score: [round(v, 6) for v in top.values.tolist()]}

    def rest(self, fields: dict) -> list[dict]:
        return [{"label": label, self.score: s} for label, s in zip(fields["label"], fields[self.score], strict=True)]


class TensorOutput(OutputCodec):
    """An output row as a nested list under the output's name (what undeclared outputs get too)."""

    kind = "tensor"

    def fields(self) -> dict[str, str]:
        return {self.output["name"]: oip.datatype_of(self.output.get("dtype", "float32"))}

    def encode(self, row: torch.Tensor, info: dict) -> dict:
        return {self.output["name"]: row.tolist()}
