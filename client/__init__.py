"""Python client for the TorchServe APIs this project serves, and helpers to run a server."""

from client.api import TorchServeClient, TorchServeError

__all__ = ["TorchServeClient", "TorchServeError"]
