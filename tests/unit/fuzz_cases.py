"""Hostile requests for the fuzz suite, the regression corpus and the live check: one ``Case`` type,
the in-process property check, and Hypothesis strategies per path (REST JSON, REST raw bodies, v2
JSON, v2 binary), built from each model's own samples, manifest and handler declarations.
(Over 250 lines: the case type, its check and its generators are read together.)"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import struct
import tempfile
import time
import tracemalloc
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hypothesis import strategies as st
from ts.context import Context

from export.paths import CONFIG, ROOT
from export.samples import torchserve_value
from tests.support import samples, strict_json
from tools import fake_worker

CORPUS = ROOT / "tests" / "fuzz_corpus"
PATHS = ("rest_json", "rest_raw", "v2_json", "v2_binary")
# The largest body TorchServe accepts (config.properties): generated bodies go up to it.
MAX_REQUEST = int(re.search(r"^max_request_size=(\d+)", CONFIG.read_text(), re.M)[1])
MAX_ERROR_BODY = 2000  # bytes of a JSON error body (messages are cut to 1000 characters)
V2_KEYS = ("inputs", "name", "shape", "datatype", "data", "parameters", "binary_data_size", "id", "outputs")
DATATYPES = ("FP32", "FP64", "FP16", "INT64", "INT32", "INT8", "UINT8", "BOOL", "BYTES")
# JSON texts no dict can be dumped to: scalars, an integer over Python's 4,300 digits, deep nesting.
RAW_JSON = (b"42", b"true", b"1.5", b"null", b'"x"', b'{"a": 1' + b"9" * 5000 + b"}", b"[" * 100000, b'"\\ud800"')
CONTENT_TYPES = (
    "application/json",
    "image/png",
    "image/jpeg",
    "text/csv",
    "text/plain",
    "application/octet-stream",
    "",
)


@dataclass
class Case:
    """One request as a client sends it; the body is ``parts`` joined (each piece repeated)."""

    content_type: str
    parts: list[tuple[bytes, int]]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def body(self) -> bytes:
        return b"".join(piece * times for piece, times in self.parts)

    def to_json(self) -> dict:
        parts = [[base64.b64encode(p).decode(), t] for p, t in self.parts]
        return {"content_type": self.content_type, "headers": self.headers, "parts": parts}

    @classmethod
    def from_json(cls, doc: dict) -> Case:
        parts = [(base64.b64decode(p), t) for p, t in doc["parts"]]
        return cls(doc["content_type"], parts, doc.get("headers", {}))

    def save(self, model: str, path: str, into: Path | None = None) -> Path:
        """Write this case under ``into`` (default: the regression corpus), named by its content."""
        doc = self.to_json()
        name = hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:10]
        target = (into or CORPUS) / model / f"{path}-{name}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(doc, indent=1) + "\n")
        return target


def keep_failure(case: Case, model: str, path: str, profile: str) -> Path:
    """Save a failing example: into the committed corpus only for ``make fuzz`` (profile "long");
    `make test` keeps it outside the project (a user's changes stay in models/<name>/)."""
    scratch = Path(os.environ.get("KIT_FUZZ_FAILURES") or Path(tempfile.gettempdir()) / "kit-fuzz-failures")
    return case.save(model, path, CORPUS if profile == "long" else scratch)


def corpus(model: str) -> list[tuple[str, Case]]:
    """The committed cases for ``model``: its own folder and ``any/`` (sent to every model)."""
    files = sorted((CORPUS / model).glob("*.json")) + sorted((CORPUS / "any").glob("*.json"))
    return [(f"{f.parent.name}/{f.name}", Case.from_json(json.loads(f.read_text()))) for f in files]


def context(model_dir: Path, cases: list[Case]) -> Context:
    """A real ts Context for one batch, with each request's headers (tools/fake_worker.py)."""
    return fake_worker.context(model_dir, [("body", c.content_type, c.headers) for c in cases])


class Timed:
    """A model that adds up the CPU time spent in it (the rest of a request's is the handler's)."""

    def __init__(self, model):
        self.model, self.seconds = model, 0.0

    def __call__(self, *tensors):
        started = time.process_time()
        try:
            return self.model(*tensors)
        finally:
            self.seconds += time.process_time() - started

    def __getattr__(self, name: str):
        return getattr(self.model, name)


@dataclass
class Measure:
    """Worst handler time (outside the model), worst total time and worst traced memory per request
    seen so far, and examples run."""

    examples: int = 0
    seconds: float = 0.0  # CPU time outside the model: decoding, checks, answers (other load does not count)
    total: float = 0.0  # wall time with the model (bounded by the batch limits, not by the body)
    peak_mb: float = 0.0
    slowest: str = ""  # what the slowest request was (content type, size, start of its body)


def check(handler, model_dir: Path, case: Case, good: Case, measure: Measure) -> None:
    """The properties: 2xx, or 4xx with a short JSON error; valid JSON; the good batch-mate answered."""
    bodies = [case, good]
    ctx = context(model_dir, bodies)
    rows = [{"body": torchserve_value(c.body, c.content_type)} for c in bodies]
    handler.model = timed = Timed(handler.model)
    tracemalloc.start()
    started, cpu = time.perf_counter(), time.process_time()
    try:
        answers = handler.handle(rows, ctx)
    finally:
        total, cpu = time.perf_counter() - started, time.process_time() - cpu
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        handler.model = timed.model
    elapsed = cpu - timed.seconds
    measure.examples += 1
    measure.total = max(measure.total, total)
    if elapsed > measure.seconds:
        body = case.body
        measure.slowest = f"{case.content_type or '-'} {len(body)} bytes {body[:60]!r}"
    measure.seconds, measure.peak_mb = max(measure.seconds, elapsed), max(measure.peak_mb, peak)
    status, text = ctx.get_response_status(0)[0], answers[0].decode()
    answer = strict_json(answers[0])
    assert 200 <= status < 300 or 400 <= status < 500, (status, text[:300])
    if status >= 400:
        assert isinstance(answer, dict) and answer["code"] == status and answer["type"], text[:300]
        assert answer.get("message") or answer.get("error"), text[:300]
        assert len(text) <= MAX_ERROR_BODY, len(text)
    assert ctx.get_response_status(1)[0] == 200, answers[1]


# --- strategies ---------------------------------------------------------------------------------

SPECIAL = st.sampled_from(
    [2**63, -(2**64), 10**300, 1e308, -0.0, float("nan"), float("inf"), "\ud800", "", "A" * 300, True, None]
)


def json_values(keys: list[str]) -> st.SearchStrategy:
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12) | SPECIAL
    key = st.sampled_from(keys) | st.text(max_size=8)
    return st.recursive(scalars, lambda c: st.lists(c, max_size=6) | st.dictionaries(key, c, max_size=4), max_leaves=24)


@st.composite
def mutated(draw, doc, keys: list[str]):
    """``doc`` with one node replaced, dropped, deepened or repeated many times."""
    path, node = [], doc
    while isinstance(node, (dict, list)) and node and draw(st.booleans()):
        step = draw(st.sampled_from(list(node) if isinstance(node, dict) else range(len(node))))
        path.append(step)
        node = node[step]
    how = draw(st.sampled_from(["replace", "deepen", "repeat", "drop"]))
    if how == "replace":
        new = draw(json_values(keys))
    elif how == "deepen":
        new = node
        for _ in range(draw(st.integers(1, 40))):
            new = [new]
    elif how == "repeat":  # never past max_request_size: TorchServe answers 413 before any handler
        most = MAX_REQUEST // max(1, len(dumps(node)))
        new = [node] * draw(st.integers(min(2, most), max(min(5000, most), min(2, most))))
    else:
        new = None
    if not path:
        return new
    doc = json.loads(json.dumps(doc))  # a copy
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    if how == "drop" and isinstance(parent, dict):
        parent.pop(path[-1])
    else:
        parent[path[-1]] = new
    return doc


def dumps(doc) -> bytes:
    return json.dumps(doc).encode("utf-8", "surrogatepass")


@st.composite
def amplified(draw, raw: bytes) -> list[tuple[bytes, int]]:
    """``raw`` as parts: as is, cut, with bytes flipped, or a slice repeated up to the size limit."""
    how = draw(st.sampled_from(["same", "cut", "flip", "repeat", "random"]))
    if how == "cut":
        return [(raw[: draw(st.integers(0, len(raw)))], 1)]
    if how == "flip" and raw:
        data = bytearray(raw)
        for _ in range(draw(st.integers(1, 8))):
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
        return [(bytes(data), 1)]
    if how == "repeat" and raw:
        start = draw(st.integers(0, len(raw) - 1))
        piece = raw[start : draw(st.integers(start + 1, len(raw)))]
        times = draw(st.integers(2, max(2, (MAX_REQUEST - len(raw)) // len(piece))))
        return [(raw[:start], 1), (piece, times), (raw[start:], 1)]
    if how == "random":
        return [(draw(st.binary(max_size=512)), 1)]
    return [(raw, 1)]


class Strategies:
    """Per model, one strategy per path, seeded with its samples and its handler's v2 input names."""

    def __init__(self, model: str, handler):
        self.samples = samples(model)
        self.json_docs = [json.loads(s.raw) for s in self.samples if s.content_type == "application/json"]
        self.raw = [s for s in self.samples if s.content_type != "application/json"]
        self.names = list(handler.v2_inputs)
        sample_keys = [k for d in self.json_docs if isinstance(d, dict) for k in d]
        self.keys = sorted({*sample_keys, *self.names, *V2_KEYS, *(s.name for s in handler.input_specs)})
        self.v2_docs = [self.v2_doc(name, s) for name in self.names for s in self.samples]

    def v2_doc(self, name: str, sample) -> dict:
        """A v2 request built from a sample: its raw body as one BYTES element, or its first
        JSON array as FP32 (a seed to mutate: it need not be valid)."""
        doc = json.loads(sample.raw) if sample.content_type == "application/json" else None
        value = next((v for v in doc.values() if isinstance(v, list)), None) if isinstance(doc, dict) else None
        try:
            array = np.asarray(value, dtype=np.float32)
            entry = {"name": name, "shape": list(array.shape), "datatype": "FP32", "data": array.reshape(-1).tolist()}
        except (TypeError, ValueError):
            entry = {"name": name, "shape": [1], "datatype": "BYTES", "data": [base64.b64encode(sample.raw).decode()]}
        return {"id": "fuzz", "inputs": [entry]}

    def rest_json(self) -> st.SearchStrategy:
        seeded = st.sampled_from(self.json_docs).flatmap(lambda d: mutated(d, self.keys)) if self.json_docs else None
        docs = json_values(self.keys) if seeded is None else st.one_of(seeded, json_values(self.keys))
        hostile = st.sampled_from(RAW_JSON) | st.binary(max_size=64)
        raw = docs.map(dumps).flatmap(amplified) | hostile.map(lambda b: [(b, 1)])
        return raw.map(lambda parts: Case("application/json", parts))

    def rest_raw(self) -> st.SearchStrategy:
        seeds = [s.raw for s in self.raw] or [b"", b"\x89PNG\r\n\x1a\n", b"a,b\n1,2\n"]
        ctypes = st.sampled_from(sorted({s.content_type for s in self.raw} | set(CONTENT_TYPES)))
        bodies = st.sampled_from(seeds).flatmap(amplified)
        return st.builds(Case, ctypes, bodies)

    def v2_json(self) -> st.SearchStrategy:
        docs = st.sampled_from(self.v2_docs).flatmap(lambda d: mutated(d, self.keys))
        return docs.map(dumps).flatmap(amplified).map(lambda parts: Case("application/json", parts))

    @st.composite
    def v2_binary(draw, self) -> Case:  # noqa: N805 - a composite strategy bound to the instance
        name, sample = draw(st.sampled_from(self.names)), draw(st.sampled_from(self.samples))
        datatype = draw(st.sampled_from(DATATYPES))
        tail = struct.pack("<I", len(sample.raw)) + sample.raw if datatype == "BYTES" else draw(st.binary(max_size=256))
        size = draw(st.integers(-1, len(tail) + 8) | st.just(len(tail)))
        shape = draw(st.lists(st.integers(-1, 70) | st.just(2**40), max_size=4) | st.just([1]))
        entry = {"name": name, "shape": shape, "datatype": datatype, "parameters": {"binary_data_size": size}}
        header = dumps(draw(mutated({"inputs": [entry]}, self.keys) | st.just({"inputs": [entry]})))
        odd = st.sampled_from(["9" * 5000, " 12", "1_0", "-1", "١٢"])  # too long for int(), spaces, _, Arabic digits
        length = draw(st.just(str(len(header))) | st.text(max_size=6) | st.integers(-5, 10**6).map(str) | odd)
        parts = [(header, 1), *draw(amplified(tail))]
        return Case("application/octet-stream", parts, {"Inference-Header-Content-Length": length})

    def of(self, path: str) -> st.SearchStrategy:
        return getattr(self, path)()
