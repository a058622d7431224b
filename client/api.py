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

from client.files import read_properties as read_properties  # the name callers know
from client.keys import Key, KeyFile
from client.versions import store_archive


class TorchServeError(Exception):
    """TorchServe (or a handler) answered with an error status."""

    def __init__(self, status: int, body: Any, what: str):
        self.status = status
        self.body = body
        self.type = body.get("type", "") if isinstance(body, dict) else ""
        self.message = body.get("message", body) if isinstance(body, dict) else body
        super().__init__(f"{what}: TorchServe answered {status} {self.type}: {self.message}".replace("  ", " "))


def refused_key(response: requests.Response) -> bool:
    """TorchServe's answer to a missing, wrong or expired key: 400 InvalidKeyException (not 401)."""
    return response.status_code == 400 and "InvalidKeyException" in response.text


def retriable(err: Exception) -> bool:
    """A refused connection or TorchServe's 500 "Worker died.": the request got no answer from a handler."""
    if isinstance(err, TorchServeError):
        return err.status == 500 and err.message == "Worker died."
    cause = err
    while cause is not None and not isinstance(cause, ConnectionRefusedError):
        cause = cause.__cause__ or cause.__context__
    return cause is not None


class TorchServeClient:
    """Inference and management calls; tokens come from TorchServe's ``key_file.json``.

    Keys renew: a key the file says expires within seconds, or one the server refuses, is replaced
    through TorchServe's token API (with the file's API key) and the call is sent once more. A key
    file without the API key (an inference client's, written by ``python -m client.renewer renew``) is
    never renewed from here: a refused key is replaced by the renewer's next one.
    Proxy variables (HTTP(S)_PROXY) are ignored: the bearer key goes to the server and nowhere else.
    """

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
        self.keys = KeyFile(self.key_file) if key_file else None
        self.timeout = timeout
        self.session = requests.Session()
        self.session.trust_env = False  # no proxy from the environment, no .netrc credentials

    @classmethod
    def from_config(cls, config: Path, key_file: Path | None = Path("key_file.json"), **kwargs) -> TorchServeClient:
        """A client for the addresses a config.properties sets."""
        props = read_properties(config)
        return cls(props["inference_address"], props["management_address"], key_file, **kwargs)

    def token(self, api: str) -> str | None:
        """The current ``inference`` or ``management`` key, renewed first if the file says it expires
        within seconds; None without a key file (tokens off)."""
        if self.keys is None or not self.keys.exists():
            return None
        key = self.keys.key(api)
        # Only a holder of the API key renews; an inference client waits for the renewer (client/keys.py).
        return (self.renew(api, key.value) if key.expiring() and self.keys.holds("API") else key).value

    def auth_headers(self, api: str) -> dict[str, str]:
        """``{"Authorization": "Bearer <key>"}`` for code that sends its own requests (empty: tokens off)."""
        token = self.token(api)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def renew(self, api: str, stale: str) -> Key:
        """A new ``api`` key from the token API, unless another thread or process already replaced
        ``stale`` with one that is not about to expire (each renewal voids the key before it). Without
        the API key in the file, the key the renewer writes next."""
        if not self.keys.holds("API"):
            return self.keys.wait_for_new(api, stale)
        with self.keys.renewing():  # across threads and processes
            current = self.keys.key(api)
            if current.value != stale and not current.expiring():
                return current
            headers = {"Authorization": f"Bearer {self.keys.key('API').value}"}
            response = self.session.get(
                f"{self.management_url}/token", params={"type": api}, headers=headers, timeout=self.timeout
            )
            if response.status_code >= 400:
                raise TorchServeError(response.status_code, _body(response), f"renew the {api} key")
            return self.keys.key(api)  # the server rewrote the file before answering

    def _send(self, api: str, method: str, path: str, token: str | None, **kwargs) -> requests.Response:
        base = self.inference_url if api == "inference" else self.management_url
        headers = kwargs.pop("headers", {}) | ({"Authorization": f"Bearer {token}"} if token else {})
        return self.session.request(method, base + path, headers=headers, timeout=self.timeout, **kwargs)

    def _call(self, api: str, method: str, path: str, what: str, **kwargs) -> Any:
        token = self.token(api)
        response = self._send(api, method, path, token, **kwargs)
        if token is not None and refused_key(response):
            response = self._send(api, method, path, self.renew(api, token).value, **kwargs)
        body = _body(response)
        if response.status_code >= 400:
            raise TorchServeError(response.status_code, body, what)
        return body

    # Inference API
    def ping(self) -> dict:
        """``GET /ping``: ``{"status": "Healthy"}`` once every model has its minimum workers."""
        return self._call("inference", "GET", "/ping", "ping")

    def predict(
        self,
        model: str,
        body: bytes | dict | list,
        content_type: str | None = None,
        version: str | None = None,
        retry: bool = True,
    ) -> Any:
        """``POST /predictions/{model}[/{version}]`` with raw bytes or a JSON document.

        ``retry``: send once more after a refused connection (nothing reached the server) or a 500
        "Worker died." (TorchServe ended the worker that held this request's batch: a crash, or a
        scale-down outside client/updates.py). Right for models whose answer depends only on the
        input; pass False for a stateful model. Timeouts are never retried (the request may still run).
        """
        path = f"/predictions/{model}" + (f"/{version}" if version else "")
        if isinstance(body, (dict, list)):
            body, content_type = json.dumps(body).encode(), "application/json"
        headers = {"Content-Type": content_type or "application/octet-stream"}
        try:
            return self._call("inference", "POST", path, f"predict {model}", data=body, headers=headers)
        except (requests.ConnectionError, TorchServeError) as err:
            if not (retry and retriable(err)):
                raise
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

    def register(
        self, archive: str, initial_workers: int | None = None, synchronous: bool = True, **params: Any
    ) -> dict:
        """``POST /models``: load an archive from the model store, by file name only (ValueError for a
        path, URL or directory: client.versions.store_archive). ``params`` are
        TorchServe's other registration parameters, passed as given (``batch_size``,
        ``max_batch_delay``, ``response_timeout``, ``model_name``, ...). Without them (and without
        ``initial_workers``) the archive's model-config.yaml decides."""
        query = {"url": store_archive(archive), "synchronous": synchronous} | params
        if initial_workers is not None:
            query["initial_workers"] = initial_workers
        query = {k: str(v).lower() if isinstance(v, bool) else v for k, v in query.items() if v is not None}
        return self._call("management", "POST", "/models", f"register {archive}", params=query)

    def scale(
        self,
        model: str,
        min_worker: int,
        max_worker: int | None = None,
        version: str | None = None,
        synchronous: bool = True,
    ) -> dict:
        """``PUT /models/{model}[/{version}]``: set the worker count (by default synchronously)."""
        path = f"/models/{model}" + (f"/{version}" if version else "")
        params = {
            "min_worker": min_worker,
            "max_worker": max_worker or min_worker,
            "synchronous": str(synchronous).lower(),
        }
        return self._call("management", "PUT", path, f"scale {model}", params=params)

    def set_default(self, model: str, version: str) -> dict:
        """``PUT /models/{model}/{version}/set-default``."""
        return self._call("management", "PUT", f"/models/{model}/{version}/set-default", f"set-default {model}")

    def unregister(self, model: str, version: str | None = None) -> dict:
        """``DELETE /models/{model}[/{version}]``."""
        path = f"/models/{model}" + (f"/{version}" if version else "")
        return self._call("management", "DELETE", path, f"unregister {model}")


def _body(response: requests.Response) -> Any:
    """The answer's JSON, or its text when it is not JSON."""
    try:
        return response.json()
    except ValueError:
        return response.text
