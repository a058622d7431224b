"""The errors a handler may answer with, each mapped to one HTTP status.

A handler raises these for one request; the shared base turns them into that request's status
and a JSON body shaped like TorchServe's own errors: ``{"code", "type", "message"}`` (v2 requests
get ``{"code", "type", "error"}``: Triton's and KServe's clients read ``error``). Anything else that
goes wrong while answering one request becomes that request's 500 (``InternalError``).
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

# An error body must stay far below TorchServe's max_response_size (6.5 MB here): a longer
# answer makes the frontend drop the worker. Messages are cut to this many characters.
MAX_MESSAGE = 1000
EXCERPT = 40  # characters of a client's value an error message may repeat


def excerpt(value: Any, limit: int = EXCERPT) -> str:
    """A short, printable excerpt of a client's value for an error message (never the whole of it)."""
    text = value if isinstance(value, str) else repr(value)
    text = text.encode("ascii", "backslashreplace").decode("ascii")  # lone surrogates, control chars
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


class RequestError(Exception):
    """Base of all request errors; ``status`` is the HTTP status it becomes."""

    status = 400

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message if len(message) <= MAX_MESSAGE else message[: MAX_MESSAGE - 3] + "..."

    @property
    def phrase(self) -> str:
        """The HTTP reason phrase of ``status``."""
        return HTTPStatus(self.status).phrase

    def to_json(self, v2: bool = False) -> dict:
        """The response body: TorchServe's error shape with our type name; v2 names the message ``error``."""
        return {"code": self.status, "type": type(self).__name__, "error" if v2 else "message": self.message}


class MalformedRequest(RequestError):
    """400: the body cannot be read at all (empty, invalid JSON, not an image, missing key)."""

    status = 400


class UnsupportedMediaType(RequestError):
    """415: a content type the model does not take."""

    status = 415


class InvalidInput(RequestError):
    """422: well-formed input of the wrong shape, dtype or range, or containing NaN/Inf."""

    status = 422


class InternalError(RequestError):
    """500: a bug met while answering one request (logged with its traceback); its batch-mates
    are still answered and the worker stays."""

    status = 500


class ArtifactMismatch(RuntimeError):
    """Raised at load time: the artifact's sha256 differs from the manifest's. The model fails
    to load (registration fails) rather than serving a model nobody verified."""
