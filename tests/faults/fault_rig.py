"""The rig the fault-injection suite runs on: a gateway in a thread over the upstreams, and what the tests ask of
them (see ``conftest.py`` for the layout)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fault_harness import MASTER_KEY, MAX_ANSWER, MAX_EVENT, TIMEOUT, Outcome
from raw_fault_server import RawFaultServer

from modelway.server import GatewayApp
from modelway.server.runner import GatewayServer, serve_config
from modelway.testing import OpenAISimulator

__all__ = ["Audit", "FAULTY_KEY", "HEALTHY", "HEALTHY_KEY", "Rig", "RunningGateway", "rig_config"]

#: the upstreams' keys: neither may ever reach a caller of the gateway
FAULTY_KEY = "sk-faulty-upstream-5f0c2a9e71d4b386"
HEALTHY_KEY = "sk-healthy-upstream-9b1e4d07c3a2f658"
HEALTHY = "openai/healthy"


class RunningGateway:
    """uvicorn serving ``app`` from a background thread on an ephemeral port."""

    def __init__(self, app: GatewayApp) -> None:
        self.app = app
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = serve_config(app, app.config, log_level="critical", lifespan="on", loop="asyncio", ws="none")
        self.server = GatewayServer(config)
        self.thread = threading.Thread(target=self._run, daemon=True, name="faults-gateway")

    def _run(self) -> None:
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self) -> RunningGateway:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.sock.close()

    def uncool(self) -> None:
        """Forget every deployment's cool-down (a provider's Retry-After starts one even with ``cooldown: 0``)."""
        gateway = self.app.gateway
        assert gateway is not None
        for group in gateway.router.groups.values():
            for dep in group.deployments:
                dep.cooldown_until = 0.0


def rig_config(faulty: str, healthy: str, raw: str, dead: str, data: Path, **server: Any) -> dict[str, Any]:
    """The gateway config over the upstreams' base URLs (see the module's docstring)."""
    bases = {"sim": faulty, "raw": raw, "dead": dead}
    models = []
    for provider in PROVIDERS:
        good = {"model": f"{provider}/healthy", "api_key": HEALTHY_KEY, "api_base": healthy, "timeout": 5}
        for upstream, base in bases.items():
            bad = {"model": f"{provider}/{upstream}-faulty", "api_key": FAULTY_KEY, "api_base": base}
            one, two = Rig.model(upstream, 1, provider), Rig.model(upstream, 2, provider)
            models.append({"name": one, "deployments": [bad]})
            models.append({"name": two, "deployments": [{**bad, "weight": 1000}, {**good, "weight": 0.001}]})
    return {
        "server": {
            "master_key": MASTER_KEY,
            "timeout": TIMEOUT,
            "max_retries": 0,
            "cooldown": 0,
            "max_answer_bytes": MAX_ANSWER,
            "max_event_bytes": MAX_EVENT,
            "allow_direct": False,
            "shutdown_timeout": 1,
            **server,
        },
        "store": {"url": f"sqlite:///{data / 'usage.db'}"},
        "usage": {"flush_interval": 0.05, "spill_path": str(data / "spill.jsonl")},
        "models": models,
    }


#: the providers the deployments are addressed as: ``openai``, and ``vllm`` (the same wire, but no Responses API of
#: its own: a dialect whose requests OpenAI itself would take natively is put through the translation this way)
PROVIDERS = ("openai", "vllm")


@dataclass(frozen=True, slots=True)
class Audit:
    what: str
    request_id: str
    expect: Outcome
    deployment: str
    healthy: str


class Rig:
    """The upstreams and a gateway over them."""

    def __init__(
        self, gateway: RunningGateway, faulty: OpenAISimulator, healthy: OpenAISimulator, raw: RawFaultServer, dead: int
    ) -> None:
        self.gateway = gateway
        self.url = gateway.url
        self.faulty = faulty
        self.healthy = healthy
        self.raw = raw
        self.dead = dead
        #: requests whose usage records are checked at the end (see :meth:`audit`)
        self.audited: list[Audit] = []
        #: what no answer of the gateway may contain: the upstreams' keys and addresses
        self.secrets = (
            FAULTY_KEY,
            HEALTHY_KEY,
            "127.0.0.1",
            "localhost",
            *(f":{port}" for port in (faulty.port, healthy.port, raw.port, dead)),
        )

    @staticmethod
    def model(upstream: str, deployments: int, provider: str = "openai") -> str:
        suffix = "" if provider == "openai" else f"@{provider}"
        return f"{upstream}-{deployments}{suffix}"

    @staticmethod
    def deployment(upstream: str, provider: str = "openai") -> str:
        """The faulty deployment's address in usage records."""
        return f"{provider}/{upstream}-faulty"

    healthy_deployment = HEALTHY

    def push(self, upstream: str, items: tuple[Any, ...]) -> None:
        if upstream == "sim":
            self.faulty.push(*items)
        elif upstream == "raw":
            self.raw.push(*items)

    def tried(self, upstream: str) -> int | None:
        """Requests the faulty upstream received (``None``: it cannot tell, a refused connection)."""
        if upstream == "sim":
            return len(self.faulty.requests)
        if upstream == "raw":
            return len(self.raw.requests)
        return None

    def reset(self) -> None:
        self.faulty.clear()
        self.healthy.clear()
        self.raw.clear()
        self.gateway.uncool()

    def audit(self, what: str, request_id: str, expect: Outcome, upstream: str, provider: str = "openai") -> None:
        """Check ``request_id``'s usage record later, in one query with every other (a query costs ~50 ms)."""
        deployment = self.deployment(upstream, provider)
        self.audited.append(Audit(what, request_id, expect, deployment, f"{provider}/healthy"))

    async def records(self, client: httpx.AsyncClient, limit: int = 50) -> dict[str, dict[str, Any]]:
        """The newest usage records by request id (the admin API flushes the ledger first)."""
        r = await client.get(
            self.url + f"/admin/usage/records?limit={limit}", headers={"Authorization": f"Bearer {MASTER_KEY}"}
        )
        assert r.status_code == 200, r.text
        return {rec["request_id"]: rec for rec in r.json()["data"]}

    async def record(self, client: httpx.AsyncClient, request_id: str) -> dict[str, Any]:
        """The usage record of ``request_id``."""
        record = (await self.records(client)).get(request_id)
        assert record is not None, f"no usage record of {request_id}"
        return dict(record)
