"""The controller in process: registry expiry and bounds, the guard (path prefix, allowed networks), DB-GPT's
controller API, ``/admin/deployments``, the workers gauge, and a Redis-backed registry shared by two gateways.

The worker is a small aiohttp double speaking FastChat's worker protocol (template, NUL-delimited cumulative
stream); the real FastChat worker is in ``test_controller_fastchat.py``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import redis
from aiohttp import web

from modelway.cluster.registry import MemoryRegistry, RegistryFullError, WorkerInfo, check_worker
from modelway.cluster.registry_redis import RedisRegistry
from modelway.config import parse_config
from modelway.errors import ConfigError, InvalidRequestError
from modelway.server.app import GatewayApp
from services import redis_url

MASTER = "sk-admin"
PREFIX = "/cluster-abc"


def _worker(name: str = "http://127.0.0.1:1", models: tuple[str, ...] = ("m",), hb: float = 100.0) -> WorkerInfo:
    return WorkerInfo(name, "fastchat", name, models, last_heartbeat=hb)


class TestMemoryRegistry:
    async def test_a_worker_expires_without_heartbeats(self) -> None:
        reg = MemoryRegistry(expiration=90, max_workers=4)
        await reg.register(_worker(hb=100.0))
        assert [w.name for w in await reg.workers(now=189.0)] == ["http://127.0.0.1:1"]
        assert await reg.heartbeat("http://127.0.0.1:1", 3, now=189.0)
        (w,) = await reg.workers(now=270.0)
        assert (w.queue_length, w.last_heartbeat) == (3, 189.0)
        assert await reg.workers(now=280.0) == []
        assert not await reg.heartbeat("http://127.0.0.1:1", 0, now=281.0)  # FastChat: exist false → re-register

    async def test_the_number_of_workers_is_capped(self) -> None:
        reg = MemoryRegistry(expiration=90, max_workers=2)
        await reg.register(_worker("http://a:1"))
        await reg.register(_worker("http://b:1"))
        with pytest.raises(RegistryFullError):
            await reg.register(_worker("http://c:1"))
        await reg.register(_worker("http://a:1", models=("m", "n")))  # a known worker may register again
        assert [w.models for w in await reg.workers(now=100.0)] == [("m", "n"), ("m",)]
        await reg.register(_worker("http://c:1", hb=500.0))  # the others expired: room again
        assert [w.name for w in await reg.workers(now=500.0)] == ["http://c:1"]

    @pytest.mark.parametrize(
        "info",
        [
            _worker(models=tuple(f"m{i}" for i in range(9))),
            _worker(models=()),
            _worker(models=("bad\nname",)),
            _worker(models=("x" * 300,)),
            _worker(name="ftp://host/"),
            _worker(name="http://" + "h" * 600),
        ],
    )
    def test_absurd_workers_are_refused(self, info: WorkerInfo) -> None:
        with pytest.raises(InvalidRequestError):
            check_worker(info, max_models=8)

    def test_duplicate_model_names_are_folded(self) -> None:
        assert check_worker(_worker(models=("a", "b", "a")), 8).models == ("a", "b")


def test_the_cluster_section_is_validated() -> None:
    cfg = parse_config({"cluster": {"controller": True, "path_prefix": "/c-1/", "allowed_networks": ["10.0.0.0/8"]}})
    c = cfg.cluster
    assert (c.controller, c.path_prefix, c.allowed_networks, c.heartbeat_expiration) == (
        True, "/c-1", ["10.0.0.0/8"], 90.0,
    )  # fmt: skip
    assert parse_config({}).cluster.allowed_networks == ["127.0.0.0/8", "::1/128"]
    for bad in ({"allowed_networks": ["nope"]}, {"path_prefix": "no-slash"}, {"dispatch": "random"}, {"x": 1}):
        with pytest.raises(ConfigError, match="cluster"):
            parse_config({"cluster": bad})


# -- a worker double --------------------------------------------------------------------------------------------
CONV = {
    "name": "vicuna_v1.1",
    "system_template": "{system_message}",
    "system_message": "SYS",
    "roles": ["USER", "ASSISTANT"],
    "messages": [],
    "offset": 0,
    "sep_style": 2,
    "sep": " ",
    "sep2": "</s>",
    "stop_str": None,
    "stop_token_ids": None,
}


class FakeWorker:
    def __init__(self) -> None:
        self.prompts: list[str] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _conv(self, request: web.Request) -> web.Response:
        return web.json_response({"conv": CONV})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        params = await request.json()
        self.prompts.append(params["prompt"])
        resp = web.StreamResponse()
        await resp.prepare(request)
        for text in ("Hi", "Hi the", "Hi there"):
            frame = {"text": text, "error_code": 0, "usage": {"prompt_tokens": 3, "completion_tokens": len(text)}}
            frame["finish_reason"] = "stop" if text == "Hi there" else None
            await resp.write(json.dumps(frame).encode() + b"\0")
        await resp.write_eof()
        return resp

    async def _generate(self, request: web.Request) -> web.Response:
        self.prompts.append((await request.json())["prompt"])
        usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        return web.json_response({"text": "Hi there", "error_code": 0, "usage": usage, "finish_reason": "stop"})

    async def __aenter__(self) -> FakeWorker:
        app = web.Application()
        app.router.add_post("/worker_generate", self._generate)
        app.router.add_post("/worker_get_conv_template", self._conv)
        app.router.add_post("/worker_generate_stream", self._stream)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


def _app(cluster: dict[str, Any], store: dict[str, Any] | None = None) -> GatewayApp:
    models = [{"name": "configured", "deployments": [{"model": "openai/gpt-4o-mini", "api_key": "sk-x"}]}]
    cfg = parse_config(
        {
            "server": {"master_key": MASTER},
            "models": models,
            "store": store or {},
            "cluster": {"controller": True, "path_prefix": PREFIX, **cluster},
        }
    )
    return GatewayApp(cfg, env={})


def _client(app: GatewayApp, peer: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(peer, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://gw")


@pytest.fixture
async def started() -> AsyncIterator[Callable[[GatewayApp], Awaitable[GatewayApp]]]:
    apps: list[GatewayApp] = []

    async def start(app: GatewayApp) -> GatewayApp:
        await app.startup()
        apps.append(app)
        return app

    yield start
    for app in apps:
        await app.shutdown()


async def _until(what: str, check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


def _register_body(worker: str, models: list[str]) -> dict[str, Any]:
    status = {"model_names": models, "speed": 1, "queue_length": 0}
    return {"worker_name": worker, "check_heart_beat": True, "worker_status": status}


async def _model_ids(c: httpx.AsyncClient) -> list[str]:
    r = await c.get("/v1/models", headers={"Authorization": f"Bearer {MASTER}"})
    return [m["id"] for m in r.json()["data"]]


async def test_the_guard_refuses_other_networks_and_paths(started: Any) -> None:
    app = await started(_app({}))
    body = _register_body("http://127.0.0.1:9", ["m"])
    async with _client(app, peer="10.1.2.3") as outsider, _client(app) as local:
        r = await outsider.post(PREFIX + "/register_worker", json=body)
        assert r.status_code == 403 and r.json()["error"]["code"] == "worker_not_allowed"
        assert (await outsider.get(PREFIX + "/test_connection")).status_code == 403
        assert (await local.post("/register_worker", json=body)).status_code == 404  # no prefix: no route
        assert (await local.get(PREFIX + "/test_connection")).json() == "success"
        assert (await local.post(PREFIX + "/register_worker", json=body)).status_code == 200
        assert (await local.post(PREFIX + "/list_models")).json() == {"models": ["m"]}
    app6 = await started(_app({"allowed_networks": ["10.0.0.0/8"]}))
    async with _client(app6, peer="10.9.9.9") as inside, _client(app6) as loopback:
        assert (await inside.get(PREFIX + "/test_connection")).status_code == 200
        assert (await loopback.get(PREFIX + "/test_connection")).status_code == 403


async def test_fastchat_controller_api(started: Any) -> None:
    app = await started(_app({"max_workers": 2, "max_models_per_worker": 2}))
    async with _client(app) as c:
        await c.post(PREFIX + "/register_worker", json=_register_body("http://127.0.0.1:7001", ["a", "b"]))
        await c.post(PREFIX + "/register_worker", json=_register_body("http://127.0.0.1:7002", ["a"]))
        r = await c.post(PREFIX + "/register_worker", json=_register_body("http://127.0.0.1:7003", ["c"]))
        assert r.status_code == 503  # max_workers
        r = await c.post(PREFIX + "/register_worker", json=_register_body("http://127.0.0.1:7004", ["x", "y", "z"]))
        assert r.status_code == 400  # max_models_per_worker
        hb = {"worker_name": "http://127.0.0.1:7001", "queue_length": 4}
        assert (await c.post(PREFIX + "/receive_heart_beat", json=hb)).json() == {"exist": True}
        unknown = {"worker_name": "http://127.0.0.1:9999", "queue_length": 0}
        assert (await c.post(PREFIX + "/receive_heart_beat", json=unknown)).json() == {"exist": False}
        status = (await c.post(PREFIX + "/worker_get_status")).json()
        assert status == {"model_names": ["a", "b"], "speed": 2.0, "queue_length": 4}
        # shortest queue: 7002 (queue 0) until its queue reaches 7001's 4: each pick counts one more in the chosen
        # worker's queue, as FastChat's controller does
        picks = []
        for _ in range(6):
            picks.append((await c.post(PREFIX + "/get_worker_address", json={"model": "a"})).json()["address"])
        assert picks[:4] == ["http://127.0.0.1:7002"] * 4 and set(picks[4:]) <= {
            "http://127.0.0.1:7001", "http://127.0.0.1:7002",
        }  # fmt: skip
        assert (await c.post(PREFIX + "/get_worker_address", json={"model": "zzz"})).json() == {"address": ""}


async def test_dbgpt_controller_api(started: Any) -> None:
    app = await started(_app({}))
    inst = {"model_name": "glm-4@llm", "host": "127.0.0.1", "port": 9999, "check_healthy": True, "healthy": True}
    async with _client(app) as c:
        assert (await c.post(PREFIX + "/api/controller/models", json=inst)).json() is True
        assert (await c.post(PREFIX + "/api/controller/heartbeat", json=inst)).json() is True
        listed = (await c.get(PREFIX + "/api/controller/models", params={"model_name": "glm-4@llm"})).json()
        assert [(i["model_name"], i["host"], i["port"], i["healthy"]) for i in listed] == [
            ("glm-4@llm", "127.0.0.1", 9999, True)
        ]
        await _until("glm-4 as a deployment", lambda: _has_model(c, "glm-4"))
        r = await c.get("/admin/deployments", headers={"Authorization": f"Bearer {MASTER}"})
        (dep,) = [d for d in r.json()["data"] if d["model"] == "glm-4"]
        assert (dep["source"], dep["provider"], dep["address"]) == ("dbgpt", "dbgpt-worker", "http://127.0.0.1:9999")
        q = {"model_name": "glm-4@llm", "host": "127.0.0.1", "port": "9999"}
        assert (await c.delete(PREFIX + "/api/controller/models", params=q)).json() is True
        assert (await c.get(PREFIX + "/api/controller/models")).json() == []
        await _until("glm-4 out of rotation", lambda: _lacks_model(c, "glm-4"))


async def _has_model(c: httpx.AsyncClient, model: str) -> bool:
    return model in await _model_ids(c)


async def _lacks_model(c: httpx.AsyncClient, model: str) -> bool:
    return model not in await _model_ids(c)


async def test_a_worker_joins_an_alias_is_listed_and_leaves_rotation(started: Any) -> None:
    app = await started(_app({"heartbeat_expiration": 1.0}))
    admin = {"Authorization": f"Bearer {MASTER}"}
    async with FakeWorker() as worker, _client(app) as c:
        # a worker serving a configured alias joins that alias's deployments; a new name becomes a new alias
        await c.post(PREFIX + "/register_worker", json=_register_body(worker.url, ["configured", "fresh"]))
        await _until("the worker in rotation", lambda: _has_model(c, "fresh"))
        deps = (await c.get("/admin/deployments", headers=admin)).json()["data"]
        by = sorted((d["model"], d["source"], d["provider"]) for d in deps)
        assert by == [
            ("configured", "config", "openai"), ("configured", "fastchat", "fastchat-worker"),
            ("fresh", "fastchat", "fastchat-worker"),
        ]  # fmt: skip
        fresh = next(d for d in deps if d["model"] == "fresh")
        assert fresh["address"] == worker.url and fresh["queue_length"] == 0 and fresh["cooling"] is False
        assert (await c.get("/admin/deployments")).status_code == 401

        body = {"model": "fresh", "messages": [{"role": "user", "content": "hello"}], "stream": True}
        r = await c.post("/v1/chat/completions", json=body, headers=admin)
        deltas = [
            json.loads(line[6:])["choices"][0]["delta"].get("content")
            for line in r.text.splitlines()
            if line.startswith("data: {") and json.loads(line[6:])["choices"]
        ]
        assert [d for d in deltas if d] == ["Hi", " the", "re"]
        assert worker.prompts == ["SYS USER: hello ASSISTANT:"]
        metrics = (await c.get("/metrics")).text
        assert 'modelway_cluster_workers{model="fresh"} 1.0' in metrics

        # no heartbeats: out of rotation after the expiration; the configured deployment stays
        await _until("the worker out of rotation", lambda: _lacks_model(c, "fresh"), seconds=5)
        deps = (await c.get("/admin/deployments", headers=admin)).json()["data"]
        assert [(d["model"], d["source"]) for d in deps] == [("configured", "config")]
        assert 'modelway_cluster_workers{model="fresh"}' not in (await c.get("/metrics")).text


@pytest.mark.usefixtures("redis_server")
async def test_two_gateways_share_a_redis_registry(started: Any) -> None:
    url = redis_url(13)
    r = redis.Redis.from_url(url)
    for key in r.scan_iter("modelway:cluster:*"):
        r.delete(key)
    r.close()
    store = {"redis_url": url}
    a = await started(_app({"heartbeat_expiration": 2.0}, store))
    b = await started(_app({"heartbeat_expiration": 2.0}, store))
    admin = {"Authorization": f"Bearer {MASTER}"}
    async with FakeWorker() as worker, _client(a) as ca, _client(b) as cb:
        await ca.post(PREFIX + "/register_worker", json=_register_body(worker.url, ["shared"]))
        await _until("the worker seen by the other gateway", lambda: _has_model(cb, "shared"))
        body = {"model": "shared", "messages": [{"role": "user", "content": "hi"}]}
        answer = (await cb.post("/v1/chat/completions", json=body, headers=admin)).json()
        assert answer["choices"][0]["message"]["content"] == "Hi there"
        assert answer["usage"]["total_tokens"] == 5
        # heartbeats to B keep it alive for both (past the expiration); A is asked right after the last one, so
        # that only the registry, not a stall of this (loaded) test process, decides what A sees
        for _ in range(6):
            await asyncio.sleep(0.5)
            hb = {"worker_name": worker.url, "queue_length": 2}
            assert (await cb.post(PREFIX + "/receive_heart_beat", json=hb)).json() == {"exist": True}
        assert (await ca.post(PREFIX + "/worker_get_status")).json()["queue_length"] == 2
        assert "shared" in await _model_ids(ca)
        await _until("expiry seen by both", lambda: _lacks_model(ca, "shared"), seconds=6)
        await _until("expiry seen by both", lambda: _lacks_model(cb, "shared"), seconds=2)
        hb = {"worker_name": worker.url, "queue_length": 0}
        assert (await ca.post(PREFIX + "/receive_heart_beat", json=hb)).json() == {"exist": False}


@pytest.mark.usefixtures("redis_server")
async def test_the_redis_registry_caps_workers_across_replicas() -> None:
    url = redis_url(13)
    one = RedisRegistry(url, expiration=30, max_workers=2, prefix="modelway:test-cap:")
    two = RedisRegistry(url, expiration=30, max_workers=2, prefix="modelway:test-cap:")
    try:
        for reg in (one, two):
            for w in await reg.workers():
                await reg.remove(w.name)
        now = time.time()
        await one.register(_worker("http://a:1", hb=now))
        await two.register(_worker("http://b:1", hb=now))
        with pytest.raises(RegistryFullError):
            await one.register(_worker("http://c:1", hb=now))
        await two.add_queue("http://a:1", 3)
        assert [(w.name, w.queue_length) for w in await one.workers()] == [("http://a:1", 3), ("http://b:1", 0)]
        assert await one.remove("http://a:1")
        assert [w.name for w in await two.workers()] == ["http://b:1"]
    finally:
        await one.aclose()
        await two.aclose()


# -- review regressions --------------------------------------------------------------------------------


async def test_a_worker_address_outside_the_allowed_networks_is_refused(started: Any) -> None:
    app = await started(_app({}))
    async with _client(app) as c:
        for address in (
            "http://169.254.169.254",  # cloud metadata: the gateway would post callers' prompts there
            "http://10.0.0.5:21002",
            "http://user:pw@127.0.0.1:21002",  # credentials in the address
            "http://127.0.0.1:21002/?x=1",
            "http://127.0.0.1:21002#frag",
            "http://127.0.0.1:99999",
        ):
            r = await c.post(PREFIX + "/register_worker", json=_register_body(address, ["m"]))
            assert r.status_code in (400, 403), (address, r.status_code, r.text)
        # without worker_status the gateway would call the address itself: refused before it does
        r = await c.post(PREFIX + "/register_worker", json={"worker_name": "http://169.254.169.254"})
        assert r.status_code == 403, r.text
        inst = {"model_name": "glm-4@llm", "host": "10.1.2.3", "port": 8001}
        assert (await c.post(PREFIX + "/api/controller/models", json=inst)).status_code == 403
        assert (await c.post(PREFIX + "/api/controller/heartbeat", json=inst)).status_code == 403
        assert (await c.post(PREFIX + "/list_models")).json() == {"models": []}
        # loopback addresses, by IP or by a name that resolves to loopback, are fine
        for address in ("http://127.0.0.1:21002", "http://localhost:21003", "http://[::1]:21004/"):
            r = await c.post(PREFIX + "/register_worker", json=_register_body(address, ["m"]))
            assert r.status_code == 200, (address, r.text)


async def test_a_fastchat_worker_that_registers_no_models_leaves(started: Any) -> None:
    """FastChat has no deregistration: a worker that drains (``modelway worker`` does) registers with no models."""
    app = await started(_app({}))
    async with _client(app) as c:
        worker = "http://127.0.0.1:21002"
        assert (await c.post(PREFIX + "/register_worker", json=_register_body(worker, ["m"]))).status_code == 200
        assert (await c.post(PREFIX + "/list_models")).json() == {"models": ["m"]}
        r = await c.post(PREFIX + "/register_worker", json=_register_body(worker, []))
        assert r.status_code == 200, r.text
        assert (await c.post(PREFIX + "/list_models")).json() == {"models": []}
        assert (await c.post(PREFIX + "/get_worker_address", json={"model": "m"})).json() == {"address": ""}
        hb = {"worker_name": worker, "queue_length": 0}
        assert (await c.post(PREFIX + "/receive_heart_beat", json=hb)).json() == {"exist": False}


async def test_path_tricks_do_not_reach_the_controller(started: Any) -> None:
    app = await started(_app({}))
    body = _register_body("http://127.0.0.1:9", ["m"])
    async with _client(app) as c, _client(app, peer="10.1.2.3") as outsider:
        for path in (
            "/register_worker",
            PREFIX + "x/register_worker",  # the prefix as a substring
            PREFIX[:-1] + "/register_worker",
            "/x" + PREFIX + "/register_worker",
            PREFIX + "//register_worker",
            PREFIX + "/register_worker/",
            PREFIX.upper() + "/register_worker",
        ):
            r = await c.post(path, json=body)
            assert r.status_code == 404, (path, r.status_code)
        for method in ("GET", "HEAD", "POST", "DELETE", "PUT"):
            for path in ("/register_worker", "/list_models", "/api/controller/models", "/api/controller/heartbeat"):
                r = await outsider.request(method, PREFIX + path)
                assert r.status_code == 403, (method, path, r.status_code)
        assert (await c.post(PREFIX + "/list_models")).json() == {"models": []}


async def test_template_retries_are_forgotten_with_their_workers(started: Any) -> None:
    app = await started(_app({}))
    cluster = app.gateway.cluster  # type: ignore[union-attr]
    assert cluster is not None
    for i in range(20):
        info = WorkerInfo(f"http://127.0.0.1:{1000 + i}", "fastchat", f"http://127.0.0.1:{1000 + i}", ("m",),
                          last_heartbeat=time.time())  # fmt: skip
        await cluster.registry.register(info)
        await cluster.sync()  # nobody listens there: the template fetch is retried later
        await cluster.registry.remove(info.name)
        await cluster.sync()
    assert len(cluster._retry_at) == 0


class OddWorker:
    """A FastChat worker double whose streams go wrong, one way per model name."""

    def __init__(self) -> None:
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _conv(self, request: web.Request) -> web.Response:
        return web.json_response({"conv": CONV})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        model = (await request.json())["model"]
        if model == "html":
            return web.Response(text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(json.dumps({"text": "Hel", "error_code": 0}).encode() + b"\0")
        await resp.write(json.dumps({"text": "Hello", "error_code": 0}).encode() + b"\0")
        if model == "dies":
            assert request.transport is not None
            request.transport.abort()  # the worker process died mid-stream
            return resp
        if model == "fails":
            await resp.write(json.dumps({"text": "CUDA out of memory", "error_code": 50002}).encode() + b"\0")
        if model == "huge":
            await resp.write(b'{"text": "' + b"x" * (3 * 1024 * 1024))
        await resp.write_eof()
        return resp

    async def __aenter__(self) -> OddWorker:
        app = web.Application()
        app.router.add_post("/worker_get_conv_template", self._conv)
        app.router.add_post("/worker_generate_stream", self._stream)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


async def test_a_worker_that_breaks_mid_stream_gives_the_client_an_error_event(started: Any) -> None:
    app = await started(_app({}))
    admin = {"Authorization": f"Bearer {MASTER}"}
    async with OddWorker() as worker, _client(app) as c:
        models = ["dies", "fails", "huge", "html"]
        await c.post(PREFIX + "/register_worker", json=_register_body(worker.url, models))
        for m in models:
            await _until(f"{m} in rotation", lambda m=m: _has_model(c, m))  # type: ignore[misc]
        for m in models:
            body = {"model": m, "messages": [{"role": "user", "content": "hi"}], "stream": True}
            r = await c.post("/v1/chat/completions", json=body, headers=admin)
            events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
            errors = [e["error"] for e in events if "error" in e]
            if m == "html":  # nothing sent yet: an HTTP error answer
                assert r.status_code >= 500 and "error" in r.json(), (m, r.status_code, r.text[:300])
                continue
            assert r.status_code == 200, (m, r.text[:300])
            text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))
            assert text == "Hello", (m, text)
            assert len(errors) == 1, (m, r.text[-500:])
            assert not any(e.get("choices") and e["choices"][0].get("finish_reason") for e in events), m


async def test_fastchat_lists_only_the_models_it_can_dispatch(started: Any) -> None:
    """FastChat's API server lists ``/list_models`` and then asks ``/get_worker_address``, which only FastChat workers
    answer: a DB-GPT instance's model listed there is one its callers can never reach."""
    app = await started(_app({}))
    async with _client(app) as c:
        inst = {"model_name": "glm-4@llm", "host": "127.0.0.1", "port": 9999}
        assert (await c.post(PREFIX + "/api/controller/models", json=inst)).json() is True
        await c.post(PREFIX + "/register_worker", json=_register_body("http://127.0.0.1:7001", ["vicuna"]))
        for path in ("/list_models", "/list_language_models"):
            assert (await c.post(PREFIX + path)).json() == {"models": ["vicuna"]}, path
        assert (await c.post(PREFIX + "/get_worker_address", json={"model": "glm-4"})).json() == {"address": ""}
