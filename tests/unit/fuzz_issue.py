"""The hostile requests issue 10 lists (found by review and a live probe), built for any model from
its samples and its handler's v2 input names, so a new model folder gets them too."""

from __future__ import annotations

import base64
import json
import struct
import zlib

from tests.support import samples
from tests.unit.fuzz_cases import Case

BIG_INT = b"9" * 5000  # over Python's 4,300-digit limit for int(str)


def v2(inputs: list, **doc) -> Case:
    return Case("application/json", [(json.dumps({"inputs": inputs} | doc).encode(), 1)])


def v2_binary(entry: dict, tail: bytes, length: str | None = None) -> Case:
    header = json.dumps({"inputs": [entry]}).encode()
    return Case(
        "application/octet-stream",
        [(header + tail, 1)],
        {"Inference-Header-Content-Length": length or str(len(header))},
    )


def big_png() -> bytes:
    """A 4096x4096 grayscale PNG of ~16 KB (all black): cheap to send, costly to decode."""
    side = 4096

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\0" * ((side + 1) * side), 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def numbers_replaced(doc, value):
    """``doc`` with every number replaced by ``value`` (readings far out of range)."""
    if isinstance(doc, list):
        return [numbers_replaced(v, value) for v in doc]
    if isinstance(doc, dict):
        return {k: numbers_replaced(v, value) for k, v in doc.items()}
    return value if isinstance(doc, (int, float)) and not isinstance(doc, bool) else doc


def strings_replaced(doc, value):
    if isinstance(doc, list):
        return [strings_replaced(v, value) for v in doc]
    if isinstance(doc, dict):
        return {k: strings_replaced(v, value) for k, v in doc.items()}
    return value if isinstance(doc, str) else doc


def issue_cases(model: str, v2_names: tuple[str, ...]) -> list[tuple[str, Case]]:
    """(label, case) for every request issue 10 lists, aimed at ``model``."""
    cases = [(f"scalar JSON {b.decode()}", Case("application/json", [(b, 1)])) for b in (b"42", b"true", b"1.5")]
    cases += [
        ("int over 4300 digits", Case("application/json", [(b'{"x": ' + BIG_INT + b"}", 1)])),
        (
            "2.2 MB of non-ASCII keys echoed",
            Case("application/json", [(b'{"', 1), ("é".encode(), 1_100_000), (b'": 1}', 1)]),
        ),
        ("deep REST JSON", Case("application/json", [(b"[", 100_000)])),
        ("lone surrogate", Case("application/json", [(b'{"text": "\\ud800", "texts": ["\\ud800"]}', 1)])),
    ]
    for name in v2_names:
        fp32 = {"name": name, "datatype": "FP32"}
        cases += [
            ("v2 zero-size dimension", v2([fp32 | {"shape": [1000000000, 0], "data": []}])),
            ("v2 shape wraps in int64", v2([fp32 | {"shape": [2**32, 2**32], "data": []}])),
            ("v2 shape of booleans", v2([fp32 | {"shape": [True], "data": [1]}])),
            ("v2 binary_data_size text", v2([fp32 | {"shape": [1], "parameters": {"binary_data_size": "abc"}}])),
            ("v2 parameters a list", v2([fp32 | {"shape": [1], "data": [1], "parameters": [1]}])),
            ("v2 name a list", v2([fp32 | {"name": [name], "shape": [1], "data": [1]}])),
            ("v2 deep JSON", Case("application/json", [(b'{"inputs": [', 1), (b"[", 100_000)])),
            (
                "v2 int over 4300 digits",
                Case("application/json", [(b'{"inputs": [{"name": "x", "data": [' + BIG_INT + b"]}]}", 1)]),
            ),
            (
                "v2 binary FP32 of 7 bytes",
                v2_binary(fp32 | {"shape": [2], "parameters": {"binary_data_size": 7}}, b"\0" * 7),
            ),
            (
                "v2 binary_data_size NaN",
                v2_binary(fp32 | {"shape": [2], "parameters": {"binary_data_size": float("nan")}}, b"\0" * 8),
            ),
            (
                "v2 header length text",
                v2_binary(fp32 | {"shape": [2], "parameters": {"binary_data_size": 8}}, b"\0" * 8, "x"),
            ),
            ("v2 lone surrogate", v2([{"name": name, "datatype": "BYTES", "shape": [1], "data": ["\ud800"]}])),
        ]
        deep = {"name": name, "datatype": "BYTES", "shape": [1], "data": ["x"]}
        for _ in range(900):
            deep["data"] = [deep["data"]]
        cases.append(("v2 BYTES 900 deep", v2([deep])))
        png = base64.b64encode(big_png()).decode()
        piece = f'"{png}", '.encode()
        head, tail = (
            f'{{"inputs": [{{"name": "{name}", "datatype": "BYTES", "shape": [301], "data": ['.encode(),
            f'"{png}"]}}]}}'.encode(),
        )
        cases.append(("v2 300 PNGs of 4096x4096", Case("application/json", [(head, 1), (piece, 300), (tail, 1)])))
        rows = "\n".join(["1,2,3,4"] * 2000)
        elements = [rows] + ["1,2,3,4"] * 63
        cases.append(
            (
                "v2 BYTES CSV of 2000 rows among 64",
                v2([{"name": name, "datatype": "BYTES", "shape": [64], "data": elements}]),
            )
        )
        cases.append(
            (
                "v2 BYTES 1001 elements",
                v2([{"name": name, "datatype": "BYTES", "shape": [1001], "data": [rows] + ["1,2,3,4"] * 1000}]),
            )
        )
        cases.append(("v2 4096x4096 PNG alone", v2([{"name": name, "datatype": "BYTES", "shape": [1], "data": [png]}])))
    for sample in samples(model):
        if sample.content_type.startswith("text/"):
            cases.append(
                (
                    f"1 MB of {sample.path.name}",
                    Case(sample.content_type, [(sample.raw, 1_000_000 // len(sample.raw) + 1)]),
                )
            )
        if sample.content_type != "application/json":
            continue
        doc = json.loads(sample.raw)
        for value in (1e20, 3e38, -3e38):
            cases.append(
                (
                    f"{sample.path.name} with numbers {value:g}",
                    Case("application/json", [(json.dumps(numbers_replaced(doc, value)).encode(), 1)]),
                )
            )
        if json.dumps(strings_replaced(doc, "")) != json.dumps(doc):
            cases.append(
                (
                    f"{sample.path.name} with 1 MB texts",
                    Case("application/json", [(json.dumps(strings_replaced(doc, "word " * 100_000)).encode(), 1)]),
                )
            )
    return cases
