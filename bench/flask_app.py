"""The common alternative: a Flask app serving the same artifact the way tutorials do.

Usage: ``python -m bench.flask_app --archive model_store/<model>.mar --port 5000``.

One ``/predict`` route, the body decoded and the answer encoded by the model's own handler code
(so every system gets the same payloads and gives the same answers), ``torch.jit.load`` +
``model.eval()`` and a forward pass under ``torch.no_grad()`` per request, no batching, torch's
default thread count, and Flask's built-in threaded server with its per-request log line.

The server's threads share the one model, as in tutorials: safe for a stateless TorchScript
forward. A stateful model (the manifest's ``reset``: a method to call before each request; or
``batching: false``) is reset and run under a lock, one request at a time, so threads never
interleave its state.
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
from contextlib import nullcontext
from pathlib import Path

import torch
from flask import Flask, jsonify, request
from werkzeug.serving import WSGIRequestHandler

from bench.archive import handler_class, model_yaml, unpack
from export.samples import torchserve_value
from handlers.artifact import read_manifest
from handlers.base import as_tuple
from handlers.errors import RequestError


def create_app(model_dir: Path) -> Flask:
    """The app for the model unpacked in ``model_dir``."""
    manifest = read_manifest(model_dir)
    codec = handler_class(model_dir)()  # only its request decoding and answer encoding
    codec.configure(manifest, model_dir, model_yaml(model_dir).get("handler", {}))
    if manifest.get("format", "torchscript") != "torchscript":
        raise SystemExit(f"the Flask comparison loads TorchScript artifacts; this one is {manifest['format']}")
    model = torch.jit.load(str(model_dir / manifest["artifact"]))
    model.eval()
    constants = manifest.get("call_constants") or {}  # non-tensor forward arguments, by keyword
    reset = manifest.get("reset")
    # A model that must see one request per call (stateful) is never run by two threads at once.
    one_at_a_time = threading.Lock() if reset or manifest.get("batching") is False else nullcontext()
    app = Flask(__name__)

    @app.route("/predict", methods=["POST"])
    def predict():
        content_type = request.mimetype or ""
        try:
            decoded = codec.preprocess(torchserve_value(request.get_data(), content_type), content_type)
        except RequestError as err:
            return jsonify(err.to_json()), err.status
        with one_at_a_time, torch.no_grad():
            if reset:
                getattr(model, reset)()
            outputs = as_tuple(model(*decoded.inputs, **constants))
        items = codec.postprocess(outputs, decoded)
        return jsonify(items[0] if decoded.single else items)

    return app


def main(argv: list[str] | None = None) -> int:
    """Command line: unpack the archive and serve it until killed."""
    parser = argparse.ArgumentParser(prog="python -m bench.flask_app", description=__doc__.splitlines()[0])
    parser.add_argument("--archive", type=Path, required=True, help="the .mar whose artifact to serve")
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    parser.add_argument(
        "--torch-threads", type=int, help="torch.set_num_threads (default: torch's, one per core, as tutorials)"
    )
    parser.add_argument(
        "--nodelay", action="store_true", help="set TCP_NODELAY on connections, unlike tutorials (default: off)"
    )
    args = parser.parse_args(argv)
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    with tempfile.TemporaryDirectory(prefix="bench-flask-") as tmp:
        app = create_app(unpack(args.archive, Path(tmp)))
        # threaded=True is Flask's default; so is Nagle's algorithm on its sockets.
        app.run(host="127.0.0.1", port=args.port, request_handler=NoDelayHandler if args.nodelay else None)
    return 0


class NoDelayHandler(WSGIRequestHandler):
    """Werkzeug's handler with Nagle's algorithm off: it writes headers and body in two sends, and
    with Nagle on, the body can wait for the client's delayed ACK (up to 40 ms on Linux)."""

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


if __name__ == "__main__":
    sys.exit(main())
