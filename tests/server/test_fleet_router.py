"""Two ``modelway serve`` processes sharing one Redis (``store.redis_url``) and one SQLite store see the same
circuit states, the same per-deployment quotas and the same run-time deployment changes (issue 11).

The upstreams are simulators in this process, so every request that reaches one is counted here:

- a circuit opened by a failure through gateway 1 keeps gateway 2's requests away from that deployment;
- a deployment's ``max_concurrent: 1`` holds across both: while gateway 1's request runs, gateway 2's waits
  ``queue_wait`` and gets a 429 with ``Retry-After``, and the upstream never has two requests at once;
- ``disable`` through gateway 1 takes the deployment out of gateway 2's rotation within seconds, ``enable`` puts
  it back.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from crashkit import Gateway

from modelway.testing import Fault, OpenAISimulator, Reply, ZhipuSimulator
from services import redis_url

MASTER = "sk-fleet-test"
AUTH = {"Authorization": f"Bearer {MASTER}"}
#: a run-time change reaches the other gateway at its next store poll (every second)
PATIENCE = 3.0


@dataclass
class Fleet:
    one: Gateway
    two: Gateway
    a: OpenAISimulator  # model m, tier 0
    b: ZhipuSimulator  # model m, tier 1; model d, tier 1
    q: OpenAISimulator  # model q, max_concurrent 1
    d: OpenAISimulator  # model d, tier 0


def _dep(sim: OpenAISimulator | ZhipuSimulator, model: str, **more: Any) -> dict[str, Any]:
    return {"model": model, "api_key": sim.api_key, "api_base": sim.base_url, **more}


@pytest.fixture(scope="module")
def fleet(redis_server: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("fleet")
    with OpenAISimulator() as a, ZhipuSimulator() as b, OpenAISimulator() as q, OpenAISimulator() as d:
        models = [
            {
                "name": "m",
                "routing": {"strategy": "priority"},
                "deployments": [_dep(a, "openai/gpt-4o-mini", tier=0), _dep(b, "zhipu/glm-4-flash", tier=1)],
            },
            {
                "name": "q",
                "routing": {"queue_wait": 0.2},
                "deployments": [_dep(q, "openai/gpt-4o-mini", quota={"max_concurrent": 1})],
            },
            {
                "name": "d",
                "routing": {"strategy": "priority"},
                "deployments": [_dep(d, "openai/gpt-4o-mini", tier=0), _dep(b, "zhipu/glm-4-air", tier=1)],
            },
        ]
        gateways = []
        for name in ("one", "two"):
            where = root / name
            where.mkdir()
            cfg = {
                "server": {"master_key": MASTER, "max_retries": 0, "log_level": "info"},
                "store": {"url": f"sqlite:///{root / 'shared.db'}", "redis_url": redis_url(12)},
                "usage": {"spill_path": str(where / "spill.jsonl"), "flush_interval": 0.05},
                "routing": {"circuit": {"failures": 1, "cooldown": 30}, "max_attempts": 2},
                "models": models,
            }
            path = where / "gw.yaml"
            path.write_text(json.dumps(cfg))
            gateways.append(Gateway(path, where))
        try:
            for gw in gateways:
                gw.start()
            yield Fleet(gateways[0], gateways[1], a, b, q, d)
        finally:
            for gw in gateways:
                gw.stop()


def chat(gw: Gateway, model: str) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return httpx.post(gw.url + "/v1/chat/completions", json=body, headers=AUTH, timeout=30)


def admin(gw: Gateway, method: str, path: str) -> httpx.Response:
    r = httpx.request(method, gw.url + path, headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    return r


def deployment(gw: Gateway, model: str, address: str) -> dict[str, Any]:
    """Gateway ``gw``'s view of ``model``'s deployment ``address`` (``GET /admin/deployments``)."""
    data = admin(gw, "GET", "/admin/deployments").json()["data"]
    found = [e for e in data if e["model"] == model and e["deployment"] == address]
    assert len(found) == 1, data
    entry: dict[str, Any] = found[0]
    return entry


def within(seconds: float, check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"not seen within {seconds} s")
        time.sleep(0.1)


def test_a_circuit_opened_through_one_gateway_is_open_in_the_other(fleet: Fleet) -> None:
    fleet.a.push(Fault.http(500))
    r = chat(fleet.one, "m")
    assert r.status_code == 200, r.text
    assert r.headers["x-modelway-deployment"] == "zhipu/glm-4-flash"  # A failed once; B answered
    assert len(fleet.a.requests) == 1
    assert deployment(fleet.one, "m", "openai/gpt-4o-mini")["circuit"]["state"] == "open"
    time.sleep(0.3)  # the verdict is sent to Redis without waiting for it

    for _ in range(5):
        r = chat(fleet.two, "m")
        assert r.status_code == 200, r.text
        assert r.headers["x-modelway-deployment"] == "zhipu/glm-4-flash"
    assert len(fleet.a.requests) == 1, "gateway 2 sent a request to the deployment whose circuit is open"
    assert deployment(fleet.two, "m", "openai/gpt-4o-mini")["circuit"]["state"] == "open"


def test_max_concurrent_holds_across_the_two_gateways(fleet: Fleet) -> None:
    fleet.q.push(Fault.slow_first_byte(1.5, then=Reply("slow one")))
    first: list[httpx.Response] = []
    t = threading.Thread(target=lambda: first.append(chat(fleet.one, "q")))
    t.start()
    try:
        within(5.0, lambda: len(fleet.q.requests) == 1)  # gateway 1's request holds the only slot
        t0 = time.monotonic()
        second = chat(fleet.two, "q")
        waited = time.monotonic() - t0
    finally:
        t.join(30)
    assert second.status_code == 429, second.text
    assert float(second.headers["retry-after"]) > 0
    assert waited >= 0.15, f"gateway 2 answered 429 after {waited:.2f} s, not after queue_wait"
    assert first and first[0].status_code == 200, first[0].text if first else "no answer"
    assert first[0].json()["choices"][0]["message"]["content"] == "slow one"
    assert len(fleet.q.requests) == 1, "the upstream had two requests in flight at once"

    # the slot is free again: gateway 2 gets it
    def answered() -> bool:
        return chat(fleet.two, "q").status_code == 200

    within(3.0, answered)


def test_disable_and_enable_through_one_gateway_reach_the_other(fleet: Fleet) -> None:
    r = chat(fleet.two, "d")
    assert r.status_code == 200 and r.headers["x-modelway-deployment"] == "openai/gpt-4o-mini", r.text
    dep_id = deployment(fleet.one, "d", "openai/gpt-4o-mini")["id"]
    assert dep_id

    assert admin(fleet.one, "POST", f"/admin/deployments/{dep_id}/disable").json()["state"] == "disabled"
    within(PATIENCE, lambda: deployment(fleet.two, "d", "openai/gpt-4o-mini")["disabled"] is True)
    seen = len(fleet.d.requests)
    for _ in range(5):
        r = chat(fleet.two, "d")
        assert r.status_code == 200 and r.headers["x-modelway-deployment"] == "zhipu/glm-4-air", r.text
    assert len(fleet.d.requests) == seen, "gateway 2 routed to the disabled deployment"

    assert admin(fleet.one, "POST", f"/admin/deployments/{dep_id}/enable").json()["state"] == "active"
    within(PATIENCE, lambda: chat(fleet.two, "d").headers.get("x-modelway-deployment") == "openai/gpt-4o-mini")
    assert len(fleet.d.requests) > seen
