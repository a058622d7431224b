"""The peers: the archive's artifact served by a tutorial-style Flask app, or by LitServe.

Usage: ``python -m bench.apps {flask,litserve} --archive model_store/<model>.mar --port N [...]``.

Both load the artifact with its own runtime (``handlers.artifact.open_artifact``: TorchScript,
ONNX or .pt2) and decode bodies and encode answers with the archive's handler code, so that every
system gets the same bodies and gives the same answers. Flask runs as tutorials do: one route, a
forward pass per request under ``torch.no_grad()``, torch's default thread count, its threaded
server with a log line per request. LitServe runs as its docs configure it: ``workers`` processes
of ``threads`` torch threads, its own dynamic batching when ``--batch`` (up to the archive's
batchSize requests, ``batch_timeout`` 1 ms, as the archive's maxBatchDelay). A stateful model (the
manifest's ``reset``, or ``batching: false``) runs one request at a time, reset before each.
"""

from __future__ import annotations

import argparse
import base64
import json
import signal
import sys
import tempfile
import threading
from contextlib import nullcontext
from pathlib import Path

import litserve as ls
import torch
from fastapi import HTTPException

from export.samples import torchserve_value
from handlers.artifact import open_artifact, read_manifest
from handlers.base import as_tuple
from handlers.errors import RequestError
from tools.fake_worker import handler_class, model_yaml, unpack


class Served:
    """The artifact with the handler's decoding and encoding, outside TorchServe."""

    def __init__(self, model_dir: Path, threads: int | None):
        self.manifest = read_manifest(model_dir)
        self.config = model_yaml(model_dir)
        self.codec = handler_class(model_dir)()  # only its request decoding and answer encoding
        self.codec.configure(self.manifest, model_dir, self.config.get("handler", {}))
        self.model = open_artifact(model_dir / self.manifest["artifact"], self.manifest, threads)
        self.reset = self.manifest.get("reset")
        self.alone = bool(self.reset) or self.manifest.get("batching") is False
        self.lock = threading.Lock() if self.alone else nullcontext()

    def decode(self, value, content_type: str):
        """A body as TorchServe hands it over (parsed JSON, text or bytes) -> Decoded."""
        return self.codec.preprocess(value, content_type)

    def predict(self, inputs: tuple) -> tuple:
        with self.lock, torch.inference_mode():
            if self.reset:
                getattr(self.model, self.reset)()
            return as_tuple(self.model(*inputs))

    def encode(self, outputs: tuple, decoded):
        items = self.codec.postprocess(outputs, decoded)
        return items[0] if decoded.single else items


def flask_app(served: Served):
    """One ``/predict`` route, as tutorials write it."""
    from flask import Flask, jsonify, request

    app = Flask(__name__)

    @app.route("/predict", methods=["POST"])
    def predict():
        content_type = request.mimetype or ""
        try:
            decoded = served.decode(torchserve_value(request.get_data(), content_type), content_type)
        except RequestError as err:
            return jsonify(err.to_json()), err.status
        return jsonify(served.encode(served.predict(decoded.inputs), decoded))

    return app


class PeerAPI(ls.LitAPI):
    """LitServe's API for the unpacked archive: each worker process loads it in ``setup``."""

    def __init__(self, model_dir: Path, threads: int, **kwargs):
        super().__init__(**kwargs)
        self.model_dir, self.threads = model_dir, threads

    def setup(self, device):
        torch.set_num_threads(self.threads)
        self.served = Served(self.model_dir, self.threads)

    def decode_request(self, request):
        value, content_type = request, "application/json"
        if isinstance(request, dict) and RAW in request:  # a raw body, wrapped by RawBodies
            content_type = request["content_type"]
            value = torchserve_value(base64.b64decode(request[RAW]), content_type)
        try:
            return self.served.decode(value, content_type)
        except RequestError as err:
            raise HTTPException(err.status, err.message) from None

    def batch(self, decoded: list):
        return decoded

    def predict(self, decoded):  # answers encoded here: postprocess needs each request's Decoded
        served = self.served
        if not isinstance(decoded, list):
            return served.encode(served.predict(decoded.inputs), decoded)
        if served.alone:
            return [served.encode(served.predict(d.inputs), d) for d in decoded]
        outputs = served.predict(served.codec.collate([d.inputs for d in decoded]))
        split = zip(*(torch.split(o, [d.inputs[0].shape[0] for d in decoded]) for o in outputs), strict=True)
        return [served.encode(o, d) for o, d in zip(split, decoded, strict=True)]

    def unbatch(self, answers):
        return answers

    def encode_response(self, answer):
        return answer


def litserve_server(model_dir: Path, threads: int, workers: int, batch: bool) -> ls.LitServer:
    """``workers`` processes of ``threads`` torch threads; batching up to the archive's batchSize."""
    batch_size = int(model_yaml(model_dir).get("batchSize", 1))
    api = PeerAPI(model_dir, threads, max_batch_size=max(1, batch_size) if batch else 1, batch_timeout=0.001)
    return ls.LitServer(api, accelerator="cpu", workers_per_device=workers, middlewares=[RawBodies])


RAW = "__raw_body_base64"


class RawBodies:
    """ASGI middleware: LitServe hands ``decode_request`` parsed JSON (or a form) only, so a body of
    another type (PNG, text) is wrapped as JSON ``{RAW: base64, "content_type": ...}`` on its way in."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"").decode().split(";")[0].strip()
        if scope["type"] != "http" or content_type in ("application/json", ""):
            return await self.app(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        wrapped = json.dumps({RAW: base64.b64encode(body).decode(), "content_type": content_type}).encode()
        kept = [(k, v) for k, v in scope["headers"] if k not in (b"content-type", b"content-length")]
        kept += [(b"content-type", b"application/json"), (b"content-length", str(len(wrapped)).encode())]

        async def replay():
            return {"type": "http.request", "body": wrapped, "more_body": False}

        return await self.app(scope | {"headers": kept}, replay, send)


def main(argv: list[str] | None = None) -> int:
    """Command line: serve the archive on 127.0.0.1 until killed."""
    parser = argparse.ArgumentParser(prog="python -m bench.apps", description=__doc__.splitlines()[0])
    parser.add_argument("system", choices=["flask", "litserve"])
    parser.add_argument("--archive", type=Path, required=True, help="the .mar whose artifact to serve")
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    parser.add_argument("--threads", type=int, default=1, help="LitServe: torch threads per worker (default: 1)")
    parser.add_argument("--workers", type=int, default=2, help="LitServe: worker processes (default: 2)")
    parser.add_argument("--batch", type=int, default=0, help="LitServe: 1 for dynamic batching (default: 0)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the unpacked archive is removed on the way out
    with tempfile.TemporaryDirectory(prefix=f"bench-{args.system}-") as tmp:
        model_dir = unpack(args.archive, Path(tmp))
        if args.system == "litserve":
            server = litserve_server(model_dir, args.threads, args.workers, bool(args.batch))
            server.run(host="127.0.0.1", port=args.port, generate_client_file=False, log_level="warning")
        else:  # torch's default threads; Flask's threaded server with Nagle's algorithm on: as tutorials
            flask_app(Served(model_dir, None)).run(host="127.0.0.1", port=args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
