"""TorchServe started the way KServe's TorchServe runtime starts it, on this machine."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from client.api import TorchServeClient
from client.server import Server, free_ports


@dataclass
class KServeStyleServer(Server):
    """``torchserve --start --model-store <repo>/model-store --ts-config <repo>/config/config.properties``,
    with the addresses moved to free loopback ports by TS_* variables (the layout sets
    ``enable_envvars_config=true``, as a pod spec would use it)."""

    ports: dict = field(default_factory=dict)

    @classmethod
    def for_repository(cls, repo: Path, work: Path) -> KServeStyleServer:
        """A server for one model repository written by deploy/kserve.py."""
        names = ("inference", "management", "metrics", "grpc_inference", "grpc_management")
        ports = dict(zip(names, free_ports(len(names)), strict=True))
        work.mkdir(parents=True, exist_ok=True)
        return cls(repo / "config" / "config.properties", repo / "model-store", work, work / "state", ports)

    @property
    def env(self) -> dict:
        overrides = {
            f"TS_{k.upper()}_ADDRESS": f"http://127.0.0.1:{p}" for k, p in self.ports.items() if "grpc" not in k
        }
        overrides |= {f"TS_{k.upper()}_PORT": str(p) for k, p in self.ports.items() if "grpc" in k}
        return super().env | overrides

    def address(self, api: str) -> str:
        return f"http://127.0.0.1:{self.ports[api]}"

    def client(self, **kwargs) -> TorchServeClient:
        # No tokens: the KServe layout leaves authentication to the cluster's ingress.
        return TorchServeClient(self.address("inference"), self.address("management"), key_file=None, **kwargs)
