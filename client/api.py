"""A small client for TorchServe's inference and management REST APIs, with token auth.

Example:
    ts = TorchServeClient.from_config("config.properties", key_file="key_file.json")
    ts.register("digits.mar")
    ts.predict("digits", Path("models/digits/samples/3.png").read_bytes(), "image/png")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests


class TorchServeError(Exception):
    """TorchServe (or a handler) answered with an error status."""

    def __init__(self, status: int, body: Any, what: str):
        self.status = status
        self.body = body
        self.type = body.get("type", "") if isinstance(body, dict) else ""
        self.message = body.get("message", body) if isinstance(body, dict) else body
        super().__init__(f"{what}: TorchServe answered {status} {self.type}: {self.message}".replace("  ", " "))


def read_properties(path: Path) -> dict[str, str]:
    """The key=value lines of a Java properties file such as config.properties."""
    props = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", "!")) and "=" in line:
            key, value = line.split("=", 1)
            props[key.strip()] = value.strip()
    return props


class TorchServeClient:
    """Inference and management calls; tokens come from TorchServe's ``key_file.json``."""

    def __init__(
        self,
        inference_url: str = "http://127.0.0.1:8080",
        management_url: str = "http://127.0.0.1:8081",
        key_file: Path | None = Path("key_file.json"),
        timeout: float = 60.0,
    ):
        self.inference_url = inference_url.rstrip("/")
        self.management_url = management_url.rstrip("/")
        self.key_file = Path(key_file) if key_file else None
        self.timeout = timeout
        self.session = requests.Session()

    @classmethod
    def from_config(cls, config: Path, key_file: Path | None = Path("key_file.json"), **kwargs) -> TorchServeClient:
        """A client for the addresses a config.properties sets."""
        props = read_properties(config)
        return cls(props["inference_address"], props["management_address"], key_file, **kwargs)

    def token(self, api: str) -> str | None:
        """The current ``inference`` or ``management`` key (re-read: TorchServe rotates them)."""
        if self.key_file is None or not self.key_file.exists():
            return None
        return json.loads(self.key_file.read_text())[api]["key"]

    def _call(self, api: str, method: str, path: str, what: str, **kwargs) -> Any:
        base = self.inference_url if api == "inference" else self.management_url
        token = self.token(api)
        headers = kwargs.pop("headers", {}) | ({"Authorization": f"Bearer {token}"} if token else {})
        response = self.session.request(method, base + path, headers=headers, timeout=self.timeout, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            raise TorchServeError(response.status_code, body, what)
        return body

    # Inference API
    def ping(self) -> dict:
        """``GET /ping``: ``{"status": "Healthy"}`` once every model has its minimum workers."""
        return self._call("inference", "GET", "/ping", "ping")

    def predict(
        self, model: str, body: bytes | dict | list, content_type: str | None = None, version: str | None = None
    ) -> Any:
        """``POST /predictions/{model}[/{version}]`` with raw bytes or a JSON document."""
        path = f"/predictions/{model}" + (f"/{version}" if version else "")
        if isinstance(body, (dict, list)):
            body, content_type = json.dumps(body).encode(), "application/json"
        headers = {"Content-Type": content_type or "application/octet-stream"}
        return self._call("inference", "POST", path, f"predict {model}", data=body, headers=headers)

    # Management API
    def list_models(self) -> list[dict]:
        """``GET /models``: every registered model with its default version's archive."""
        return self._call("management", "GET", "/models", "list")["models"]

    def describe(self, model: str, version: str | None = "all") -> list[dict]:
        """``GET /models/{model}/{version}``: workers and batch settings of one version, of ``all``
        (the default), or of the default version when ``version`` is None."""
        path = f"/models/{model}" + (f"/{version}" if version else "")
        return self._call("management", "GET", path, f"describe {model}")

    def register(self, archive: str, initial_workers: int | None = None, synchronous: bool = True, **params) -> dict:
        """``POST /models``: load an archive from the model store, by file name. Without
        ``initial_workers`` the archive's model-config.yaml decides. ``params`` are TorchServe's other
        registration parameters, passed as they are (``model_name``, ``batch_size``, ``max_batch_delay``)."""
        params |= {"url": archive, "synchronous": str(synchronous).lower()}
        if initial_workers is not None:
            params["initial_workers"] = initial_workers
        return self._call("management", "POST", "/models", f"register {archive}", params=params)

    def scale(self, model: str, min_worker: int, max_worker: int | None = None, version: str | None = None) -> dict:
        """``PUT /models/{model}[/{version}]``: set the worker count (synchronously)."""
        path = f"/models/{model}" + (f"/{version}" if version else "")
        params = {"min_worker": min_worker, "max_worker": max_worker or min_worker, "synchronous": "true"}
        return self._call("management", "PUT", path, f"scale {model}", params=params)

    def set_default(self, model: str, version: str) -> dict:
        """``PUT /models/{model}/{version}/set-default``."""
        return self._call("management", "PUT", f"/models/{model}/{version}/set-default", f"set-default {model}")

    def unregister(self, model: str, version: str | None = None) -> dict:
        """``DELETE /models/{model}[/{version}]``."""
        path = f"/models/{model}" + (f"/{version}" if version else "")
        return self._call("management", "DELETE", path, f"unregister {model}")
