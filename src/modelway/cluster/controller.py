"""The gateway as the controller of FastChat and DB-GPT model workers (``cluster.controller: true``).

FastChat's controller API (``/register_worker``, ``/receive_heart_beat``, ``/list_models``,
``/list_language_models``, ``/list_multimodal_models``, ``/get_worker_address``, ``/worker_get_status``,
``/refresh_all_workers``, ``GET /test_connection``) and DB-GPT's (``POST``/``GET``/``DELETE
/api/controller/models``, ``POST /api/controller/heartbeat``, ``GET /api/health``) are served on the gateway's
port. Each registered worker becomes a deployment of the alias named by its model (a new alias when none is
configured), through the ``fastchat-worker`` or ``dbgpt-worker`` adapter: every API of the gateway reaches it, with
keys, limits, usage records and metrics as for any deployment. A worker not heard from for
``cluster.heartbeat_expiration`` seconds (90) leaves rotation at the next sync (within a second).

**The guard.** Workers send no credentials (FastChat's and DB-GPT's workers have no way to), so two things keep
strangers from registering a worker, which would receive callers' prompts:

- ``cluster.path_prefix``: the endpoints exist only under this path (``/cluster-<secret>/register_worker``); give
  workers ``--controller-address http://gateway:4000/cluster-<secret>``. Any other path answers 404, like a route
  that does not exist. Treat the prefix as a secret (keep it out of logs that others read; use TLS off-host).
- ``cluster.allowed_networks``: the peer's address (the TCP connection's, never ``X-Forwarded-For``) must be in one
  of these CIDRs, else 403. Loopback only by default; list your workers' subnet to let them in.

A registered worker's claimed address is where requests go (callers' prompts, and the gateway's own calls to
``/worker_get_status`` and ``/worker_get_conv_template``), so it is held to the same rule: its host (an IP, or a name
resolved at registration, every address it resolves to) must be in ``allowed_networks`` too, else 403; it takes no
credentials, query or fragment. A peer let in can thus not point the gateway at the cloud metadata service or an
internal host outside the workers' networks. (A name is resolved again when the gateway connects: keep the workers'
DNS under your control.) Only workers you trust should be able to reach the controller.

``check_heart_beat: false`` is not honoured: every worker expires without heartbeats (the registry stays bounded).
With ``store.redis_url`` the registry lives in Redis and every replica (and every ``--workers`` process) sees the
same workers; without it, each process has its own, so run one process per gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from ..config import Config, Price
from ..errors import InvalidRequestError, ModelwayError, ProviderError
from ..providers.base import HTTPRequest, ProviderSettings
from ..providers.fastchat_worker import DBGPTWorkerAdapter, FastChatWorkerAdapter
from ..router import Deployment, ModelGroup, Router
from ..server.errors import Forbidden, MethodNotAllowed
from ..server.http import Request, Send, send_json
from ..transport import Transport
from .prompt import FALLBACK, ConvTemplate
from .registry import MemoryRegistry, Registry, WorkerInfo, check_worker

__all__ = ["Cluster"]

log = logging.getLogger("modelway.cluster")

_FASTCHAT = frozenset(
    {
        "/register_worker",
        "/receive_heart_beat",
        "/list_models",
        "/list_language_models",
        "/list_multimodal_models",
        "/get_worker_address",
        "/worker_get_status",
        "/refresh_all_workers",
        "/test_connection",
    }
)
_DBGPT = frozenset({"/api/controller/models", "/api/controller/heartbeat", "/api/health"})
_MAX_BODY = 64 * 1024
#: seconds given to a worker's /worker_get_status and /worker_get_conv_template
_WORKER_TIMEOUT = 5.0
#: seconds the resolution of a worker's host name may take
_RESOLVE_TIMEOUT = 5.0
#: distinct model labels of the workers gauge (more are summed as "(other)")
_MAX_LABELS = 100


class Cluster:
    """The controller's endpoints, its registry, and the registered workers' deployments in the router."""

    def __init__(self, config: Config, router: Router, transport: Transport, registry: Registry | None = None) -> None:
        c = config.cluster
        self.config = config
        self.settings = c
        self.networks = [ipaddress.ip_network(n, strict=False) for n in c.allowed_networks]
        if registry is None:
            if config.store.redis_url is not None:
                from .registry_redis import RedisRegistry

                registry = RedisRegistry(
                    config.store.redis_url, expiration=c.heartbeat_expiration, max_workers=c.max_workers
                )
            else:
                registry = MemoryRegistry(expiration=c.heartbeat_expiration, max_workers=c.max_workers)
        self.registry = registry
        self.router = router
        self.transport = transport
        #: the configured deployments of each alias (workers' deployments are added to these)
        self._configured = {name: list(g.deployments) for name, g in router.groups.items()}
        self._adapters: dict[tuple[str, str], FastChatWorkerAdapter] = {}
        self._deployments: dict[tuple[str, str, str], Deployment] = {}
        #: the worker behind each deployment in rotation (admin listing)
        self.worker_of: dict[Deployment, WorkerInfo] = {}
        #: the live workers as of the last sync
        self.workers: list[WorkerInfo] = []
        self._retry_at: dict[tuple[str, str], float] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    # -- life -----------------------------------------------------------------------------------
    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="modelway-cluster-sync")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.registry.aclose()

    async def _loop(self) -> None:
        interval = min(1.0, self.settings.heartbeat_expiration / 4)
        while True:
            try:
                await self.sync()
            except Exception as exc:  # Redis down, say: keep the last view, try again
                log.warning("cluster: cannot read the registry: %s", exc)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(interval):
                    await self._wake.wait()
            self._wake.clear()

    # -- the registry → the router ---------------------------------------------------------------
    async def sync(self) -> None:
        """Read the live workers, fetch the templates still missing, and put their deployments in rotation."""
        workers = await self.registry.workers()
        await self._fetch_templates(workers)
        self._apply(workers)

    async def _fetch_templates(self, workers: list[WorkerInfo]) -> None:
        now = time.monotonic()
        todo = []
        for w in workers:
            if w.kind != "fastchat":
                continue
            adapter = self._adapter(w)
            todo += [(adapter, w, m) for m in w.models if m not in adapter.templates]
        todo = [t for t in todo if self._retry_at.get((t[1].address, t[2]), 0.0) <= now]
        if todo:
            await asyncio.gather(*(self._fetch_template(a, w, m) for a, w, m in todo))

    async def _fetch_template(self, adapter: FastChatWorkerAdapter, w: WorkerInfo, model: str) -> None:
        """The worker's conversation template, once: not reachable yet (it registers before it serves) → try again
        at the next sync; an answer that is not a template → the fallback template."""
        try:
            data = await self._call_worker(w.address, "/worker_get_conv_template", {"model": model})
            conv = ConvTemplate.from_dict(data.get("conv"))
        except ProviderError as exc:
            if exc.status_code is None:  # no answer: not serving yet, or gone
                self._retry_at[(w.address, model)] = time.monotonic() + 1.0
                return
            log.warning("cluster: %s gave no conversation template (%s); using a fallback", w.address, exc)
            conv = FALLBACK
        except (ValueError, TypeError, AttributeError) as exc:
            log.warning("cluster: %s gave an unusable conversation template (%s); using a fallback", w.address, exc)
            conv = FALLBACK
        adapter.templates[model] = conv

    async def _call_worker(self, address: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        http = HTTPRequest("POST", address.rstrip("/") + path, {"Content-Type": "application/json"},
                           orjson.dumps(body), "fastchat-worker")  # fmt: skip
        resp = await self.transport.send(http, timeout=_WORKER_TIMEOUT)
        if resp.status >= 400:
            raise ProviderError(f"{path} answered HTTP {resp.status}", status_code=resp.status)
        data = orjson.loads(resp.body)
        if not isinstance(data, dict):
            raise ValueError(f"{path} did not answer an object")
        return data

    def _adapter(self, w: WorkerInfo) -> FastChatWorkerAdapter:
        key = (w.kind, w.address)
        adapter = self._adapters.get(key)
        if adapter is None:
            cls = FastChatWorkerAdapter if w.kind == "fastchat" else DBGPTWorkerAdapter
            adapter = self._adapters[key] = cls(ProviderSettings(base_url=w.address))
        return adapter

    def _price(self, adapter: FastChatWorkerAdapter, model: str) -> Price | None:
        for m in self.config.models:
            if m.name == model and m.price is not None:
                return m.price
        prices = self.config.prices
        return prices.get(f"{adapter.name}/{model}") or prices.get(model)

    def _apply(self, workers: list[WorkerInfo]) -> None:
        dynamic: dict[str, list[Deployment]] = {}
        owner: dict[str, str] = {}
        worker_of: dict[Deployment, WorkerInfo] = {}
        keep: set[tuple[str, str, str]] = set()
        for w in workers:
            adapter = self._adapter(w)
            for m in w.models:
                if w.kind == "fastchat" and m not in adapter.templates:
                    continue  # not in rotation until its template is known
                key = (w.kind, w.address, m)
                dep = self._deployments.get(key)
                if dep is None:
                    dep = self._deployments[key] = Deployment(adapter, m, price=self._price(adapter, m))
                dep.weight = w.speed
                keep.add(key)
                worker_of[dep] = w
                dynamic.setdefault(m, []).append(dep)
                owner.setdefault(m, w.kind)
        groups = self.router.groups
        for name in list(groups):
            if name in self._configured:
                groups[name].deployments = self._configured[name] + dynamic.pop(name, [])
            elif name in dynamic:
                groups[name].deployments = dynamic.pop(name)
            else:
                del groups[name]  # an alias of workers that are all gone
        for name, deps in dynamic.items():
            groups[name] = ModelGroup(name, deps, owned_by=owner[name])
        self._deployments = {k: d for k, d in self._deployments.items() if k in keep}
        live = {(w.kind, w.address) for w in workers}
        self._adapters = {k: a for k, a in self._adapters.items() if k in live}
        wanted = {(w.address, m) for w in workers for m in w.models}
        self._retry_at = {k: t for k, t in self._retry_at.items() if k in wanted}
        self.worker_of = worker_of
        self.workers = workers

    # -- queries ----------------------------------------------------------------------------------
    def gauge(self) -> str:
        """The registered workers per model, in the Prometheus text format."""
        counts: dict[str, int] = {}
        for w in self.workers:
            for m in w.models:
                label = m if m in counts or len(counts) < _MAX_LABELS else "(other)"
                counts[label] = counts.get(label, 0) + 1
        name = "modelway_cluster_workers"
        out = [f"# HELP {name} Workers registered with the gateway's controller, by model.", f"# TYPE {name} gauge"]
        for model, n in sorted(counts.items()):
            escaped = model.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
            out.append(f'{name}{{model="{escaped}"}} {float(n)!r}')
        return "\n".join(out) + "\n"

    # -- the endpoints ----------------------------------------------------------------------------
    def route(self, path: str) -> str | None:
        """The controller endpoint ``path`` names (without the prefix), or ``None`` when it is not one."""
        prefix = self.settings.path_prefix
        if prefix:
            if not path.startswith(prefix + "/"):
                return None
            path = path[len(prefix) :]
        return path if path in _FASTCHAT or path in _DBGPT else None

    def _allowed(self, ip: str | None) -> bool:
        try:
            addr = ipaddress.ip_address(ip.split("%", 1)[0]) if ip else None
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return addr is not None and any(addr in net for net in self.networks)

    def _guard(self, req: Request) -> None:
        client = req.scope.get("client")
        if not self._allowed(client[0] if client else None):
            raise Forbidden(
                "this address may not use the cluster controller (cluster.allowed_networks)", code="worker_not_allowed"
            )

    async def _check_address(self, address: str) -> None:
        """The worker's address names a host in ``allowed_networks`` (every address a name resolves to), without
        credentials, query or fragment; else 400 or 403, before the gateway ever connects to it."""
        u = urlsplit(address)
        try:
            port = u.port
        except ValueError:
            port = -1
        if u.username is not None or u.password is not None or u.query or u.fragment or not u.hostname or port == -1:
            raise InvalidRequestError(
                f"the worker's address must be http(s)://host[:port][/path] (got {address[:100]!r})"
            )
        host = u.hostname
        try:
            ips = [str(ipaddress.ip_address(host.split("%", 1)[0]))]
        except ValueError:
            try:
                async with asyncio.timeout(_RESOLVE_TIMEOUT):
                    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (OSError, TimeoutError):
                raise InvalidRequestError(f"the worker's host {host[:100]!r} does not resolve") from None
            ips = [str(info[4][0]) for info in infos]
        if not ips or not all(self._allowed(ip) for ip in ips):
            raise Forbidden(
                f"the worker's address {address[:100]!r} is outside cluster.allowed_networks",
                code="worker_address_not_allowed",
            )

    async def handle(self, endpoint: str, req: Request, send: Send) -> None:
        self._guard(req)
        method = req.method
        answer: Any
        if endpoint in ("/test_connection", "/api/health"):
            if method != "GET":
                raise MethodNotAllowed(method, req.path, "GET")
            answer = "success" if endpoint == "/test_connection" else {"status": "ok"}
        elif endpoint == "/api/controller/models":
            answer = await self._dbgpt_models(req)
        else:
            if method != "POST":
                raise MethodNotAllowed(method, req.path, "POST")
            body = await _body(req)
            answer = await getattr(self, "_" + endpoint.strip("/").replace("/", "_"))(body)
        await send_json(send, 200, answer, request_id=req.request_id)  # (FastChat answers null to registrations)

    async def _register(self, info: WorkerInfo) -> None:
        info = check_worker(info, self.settings.max_models_per_worker)
        await self._check_address(info.address)
        await self.registry.register(info)
        log.info("cluster: %s worker %s registered: %s", info.kind, info.address, ", ".join(info.models))
        self._wake.set()

    async def _fastchat_status(self, address: str) -> dict[str, Any]:
        try:
            return await self._call_worker(address, "/worker_get_status", {})
        except (ModelwayError, ValueError) as exc:
            raise InvalidRequestError(f"the worker at {address[:100]} did not tell its status: {exc}") from None

    async def _register_worker(self, body: dict[str, Any]) -> None:
        name = body.get("worker_name")
        if not isinstance(name, str):
            raise InvalidRequestError("worker_name must be the worker's address", param="worker_name")
        status = body.get("worker_status")
        if not isinstance(status, dict):
            check_worker(WorkerInfo(name, "fastchat", name, ("-",)), 1)  # before the gateway calls that address
            await self._check_address(name)
            status = await self._fastchat_status(name)
        if status.get("model_names") == []:
            # FastChat has no deregistration: a worker that drains registers again with no models (``modelway
            # worker`` does); it leaves at once rather than when its heartbeats stop
            if await self.registry.remove(name):
                log.info("cluster: fastchat worker %s withdrew its models", name[:100])
                self._wake.set()
            return
        await self._register(_fastchat_info(name, status, bool(body.get("multimodal")), time.time()))

    async def _receive_heart_beat(self, body: dict[str, Any]) -> dict[str, bool]:
        name = body.get("worker_name")
        queue = body.get("queue_length")
        q = queue if isinstance(queue, int) and not isinstance(queue, bool) and 0 <= queue < 1_000_000 else None
        exist = isinstance(name, str) and await self.registry.heartbeat(name, q, time.time())
        return {"exist": exist}

    async def _fastchat_workers(self) -> list[WorkerInfo]:
        return [w for w in await self.registry.workers() if w.kind == "fastchat"]

    # (FastChat's listings name only what /get_worker_address can dispatch: FastChat workers, not DB-GPT instances)
    async def _list_models(self, body: dict[str, Any]) -> dict[str, list[str]]:
        return {"models": sorted({m for w in await self._fastchat_workers() for m in w.models})}

    async def _list_language_models(self, body: dict[str, Any]) -> dict[str, list[str]]:
        return {"models": sorted({m for w in await self._fastchat_workers() if not w.multimodal for m in w.models})}

    async def _list_multimodal_models(self, body: dict[str, Any]) -> dict[str, list[str]]:
        return {"models": sorted({m for w in await self._fastchat_workers() if w.multimodal for m in w.models})}

    async def _get_worker_address(self, body: dict[str, Any]) -> dict[str, str]:
        model = body.get("model")
        serving = [w for w in await self._fastchat_workers() if model in w.models]
        if not serving:
            return {"address": ""}
        if self.settings.dispatch == "lottery":
            chosen = random.choices(serving, weights=[w.speed for w in serving])[0]
        else:
            chosen = min(serving, key=lambda w: w.queue_length / w.speed)
            await self.registry.add_queue(chosen.name, 1)
        return {"address": chosen.address}

    async def _worker_get_status(self, body: dict[str, Any]) -> dict[str, Any]:
        workers = await self._fastchat_workers()
        return {
            "model_names": sorted({m for w in workers for m in w.models}),
            "speed": sum(w.speed for w in workers),
            "queue_length": sum(w.queue_length for w in workers),
        }

    async def _refresh_all_workers(self, body: dict[str, Any]) -> None:
        async def one(w: WorkerInfo) -> None:
            try:
                status = await self._call_worker(w.address, "/worker_get_status", {})
                await self._register(_fastchat_info(w.name, status, w.multimodal, time.time()))
            except (ModelwayError, ValueError, TypeError) as exc:
                log.info("cluster: worker %s dropped on refresh: %s", w.address, exc)
                await self.registry.remove(w.name)

        await asyncio.gather(*(one(w) for w in await self._fastchat_workers()))
        self._wake.set()

    # -- DB-GPT -------------------------------------------------------------------------------------
    async def _dbgpt_models(self, req: Request) -> Any:
        if req.method == "POST":
            await self._register(_dbgpt_info(await _body(req), time.time()))
            return True
        q = {k: v[-1] for k, v in parse_qs((req.scope.get("query_string") or b"").decode("latin-1")).items()}
        if req.method == "GET":
            wanted = q.get("model_name")
            listed = [w for w in await self.registry.workers() if w.kind == "dbgpt"]
            return [_instance(w) for w in listed if wanted is None or f"{w.models[0]}@{w.worker_type}" == wanted]
        if req.method == "DELETE":
            info = _dbgpt_info({k: q.get(k) for k in ("model_name", "host", "port")}, 0.0)
            removed = await self.registry.remove(info.name)
            self._wake.set()
            return removed
        raise MethodNotAllowed(req.method, req.path, "DELETE, GET, POST")

    async def _api_controller_heartbeat(self, body: dict[str, Any]) -> bool:
        now = time.time()
        info = _dbgpt_info(body, now)
        if not await self.registry.heartbeat(info.name, None, now):
            await self._register(info)  # as DB-GPT's registry does: a heartbeat of an unknown instance registers it
        return True


async def _body(req: Request) -> dict[str, Any]:
    raw = await req.body(_MAX_BODY)
    if not raw.strip():
        return {}  # FastChat posts some requests without a body
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise InvalidRequestError("the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("the request body must be a JSON object", code="invalid_json")
    return data


def _fastchat_info(name: str, status: dict[str, Any], multimodal: bool, now: float) -> WorkerInfo:
    models = status.get("model_names")
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise InvalidRequestError("worker_status.model_names must be a list of model names", param="worker_status")
    speed, queue = status.get("speed", 1), status.get("queue_length", 0)
    if not isinstance(speed, int | float) or not isinstance(queue, int) or isinstance(queue, bool):
        raise InvalidRequestError("worker_status.speed and queue_length must be numbers", param="worker_status")
    return WorkerInfo(name, "fastchat", name, tuple(models), float(speed), queue, now, multimodal)


def _dbgpt_info(body: dict[str, Any], now: float) -> WorkerInfo:
    key, host, port = body.get("model_name"), body.get("host"), body.get("port")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if not isinstance(key, str) or "@" not in key or not isinstance(host, str) or not isinstance(port, int):
        raise InvalidRequestError("a DB-GPT instance needs model_name (<name>@<type>), host and port")
    model, worker_type = key.rsplit("@", 1)
    if not 0 < port < 65536 or not host or "/" in host or "@" in host:
        raise InvalidRequestError("host and port must name the worker's address")
    address = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    weight = body.get("weight", 1.0)
    speed = float(weight) if isinstance(weight, int | float) and not isinstance(weight, bool) and weight > 0 else 1.0
    return WorkerInfo(f"{key}@{host}:{port}", "dbgpt", address, (model,), speed, 0, now, worker_type=worker_type)


def _instance(w: WorkerInfo) -> dict[str, Any]:
    u = urlsplit(w.address)
    return {
        "model_name": f"{w.models[0]}@{w.worker_type}",
        "host": u.hostname,
        "port": u.port,
        "weight": w.speed,
        "check_healthy": True,
        "healthy": True,
        "enabled": True,
        "prompt_template": None,
        "last_heartbeat": datetime.fromtimestamp(w.last_heartbeat, UTC).isoformat(),
        "remove_from_registry": False,
    }
