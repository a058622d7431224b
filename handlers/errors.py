"""The errors a handler may answer with, each mapped to one HTTP status.

A handler raises these for one request; the shared base turns them into that request's status
and a JSON body shaped like TorchServe's own errors: ``{"code", "type", "message"}``. Anything
else that goes wrong is a bug and surfaces in ``model_log.log`` (TorchServe answers 503).
"""

from __future__ import annotations


class RequestError(Exception):
    """Base of all request errors; ``status`` is the HTTP status it becomes."""

    status = 400
    phrase = "Bad Request"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict:
        """The response body: TorchServe's error shape, with our type name."""
        return {"code": self.status, "type": type(self).__name__, "message": self.message}


class MalformedRequest(RequestError):
    """400: the body cannot be read at all (empty, invalid JSON, not an image, missing key)."""

    status = 400
    phrase = "Bad Request"


class UnsupportedMediaType(RequestError):
    """415: a content type the model does not take."""

    status = 415
    phrase = "Unsupported Media Type"


class InvalidInput(RequestError):
    """422: well-formed input of the wrong shape, dtype or range, or containing NaN/Inf."""

    status = 422
    phrase = "Unprocessable Entity"


class ArtifactMismatch(RuntimeError):
    """Raised at load time: the artifact's sha256 differs from the manifest's. The model fails
    to load (registration fails) rather than serving a model nobody verified."""
