"""Spread predictions over several TorchServe instances, in turn, with failover.

Not a load balancer: the smallest client-side round robin that shows the archives scale out
(in a cluster, KServe's ingress or a Service does this). A server that refuses the connection or
answers 5xx is skipped and the request goes to the next one; a 4xx is the caller's error and is raised.
"""

from __future__ import annotations

import itertools
import threading
from collections import Counter
from typing import Any

import requests

from client.api import TorchServeClient, TorchServeError


class RoundRobinClient:
    """``predict`` on each client in turn; retries a failed request on the others.

    Example:
        pool = RoundRobinClient([server_a.client(), server_b.client()])
        pool.predict("digits", png, "image/png")
    """

    def __init__(self, clients: list[TorchServeClient]):
        self.clients = clients
        self._next = itertools.cycle(range(len(clients)))
        self._lock = threading.Lock()
        self.served: Counter = Counter()  # inference URL -> requests answered
        self.failovers = 0

    def predict(self, *args: Any, **kwargs: Any) -> Any:
        """Like ``TorchServeClient.predict``; raises the last error if every server failed."""
        with self._lock:
            start = next(self._next)
        last: Exception | None = None
        for offset in range(len(self.clients)):
            client = self.clients[(start + offset) % len(self.clients)]
            try:
                answer = client.predict(*args, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as err:
                last = err
            except TorchServeError as err:
                if err.status < 500:
                    raise
                last = err
            else:
                with self._lock:
                    self.served[client.inference_url] += 1
                    self.failovers += offset > 0
                return answer
        raise last
